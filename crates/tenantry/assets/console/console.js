// Tenantry console: progressive enhancements only; every form works without this file.
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
});
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
// The activity page: new activities arrive over the WebSocket (same origin, the session
// cookie), resuming after the newest one the page shows; without this the page is a list.
(() => {
  const feed = document.querySelector("#feed[data-live-org]");
  if (!feed || !window.WebSocket) return;
  const status = document.getElementById("live-status");
  const org = feed.dataset.liveOrg;
  let since = feed.dataset.since || "";
  let delay = 1000;
  const connect = () => {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = "org_id=" + encodeURIComponent(org) + (since ? "&since=" + encodeURIComponent(since) : "");
    const socket = new WebSocket(scheme + "//" + location.host + "/v1/ws?" + query);
    let opened = false;
    socket.addEventListener("open", () => { opened = true; status.textContent = "Live: new activity appears here."; delay = 1000; });
    socket.addEventListener("message", (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch (_) { return; }
      if (!event.id || !event.summary || event.type === "AUDIT_EVENT") return;
      since = event.id;
      if (feed.querySelector('[data-id="' + CSS.escape(event.id) + '"]')) return;
      const item = document.createElement("li");
      item.dataset.id = event.id;
      const time = document.createElement("time");
      time.dateTime = event.at;
      time.textContent = event.at.replace(/\.\d+Z$/, "Z");
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = event.type;
      const summary = document.createElement("span");
      summary.className = "summary";
      summary.textContent = event.summary;
      item.append(time, " ", kind, " ", summary);
      feed.prepend(item);
    });
    socket.addEventListener("close", (closed) => {
      if (closed.code === 4401 || closed.code === 4403) { status.textContent = "Disconnected: sign in again to follow activity."; return; }
      // A refused handshake may name an event that is gone: start from now instead.
      if (!opened) since = "";
      status.textContent = "Reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    });
  };
  connect();
})();
