//! A typed client for the test app: `app.as_(&user).get(path)`, `.post(path, body)`,
//! `app.anon().get(path)`, answering a [`Res`].

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::TestApp;

/// Requests as one bearer token (a user's access token or an API key), or anonymously.
#[derive(Clone)]
pub struct Client<'a> {
    app: &'a TestApp,
    token: Option<String>,
}

impl TestApp {
    /// Requests sent with `token` as `Authorization: Bearer` (a [`super::User`] derefs to
    /// its access token).
    pub fn as_(&self, token: &str) -> Client<'_> {
        Client {
            app: self,
            token: Some(token.to_owned()),
        }
    }

    /// Requests sent without credentials.
    pub fn anon(&self) -> Client<'_> {
        Client {
            app: self,
            token: None,
        }
    }
}

impl Client<'_> {
    /// A request builder for `method path` with this client's credentials.
    pub fn request(&self, method: Method, path: impl AsRef<str>) -> reqwest::RequestBuilder {
        let req = self.app.client.request(method, self.app.url(path.as_ref()));
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends `method path` with an optional JSON body.
    pub async fn send(self, method: Method, path: impl AsRef<str>, body: Option<Value>) -> Res {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        Res(req.send().await.expect("request"))
    }

    /// `GET path`.
    pub async fn get(self, path: impl AsRef<str>) -> Res {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(self, path: impl AsRef<str>, body: Value) -> Res {
        self.send(Method::POST, path, Some(body)).await
    }

    /// `POST path` without a body.
    pub async fn post_empty(self, path: impl AsRef<str>) -> Res {
        self.send(Method::POST, path, None).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(self, path: impl AsRef<str>, body: Value) -> Res {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(self, path: impl AsRef<str>, body: Value) -> Res {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(self, path: impl AsRef<str>) -> Res {
        self.send(Method::DELETE, path, None).await
    }
}

/// A response of the test app.
#[derive(Debug)]
pub struct Res(reqwest::Response);

impl Res {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.0.status()
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.0.headers()
    }

    /// The body as JSON of type `T`; panics (with the body) when it is not.
    pub async fn json<T: DeserializeOwned>(self) -> T {
        let status = self.0.status();
        let text = self.0.text().await.expect("response body");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status} body is not the JSON expected ({e}): {text}"))
    }

    /// The body as text.
    pub async fn text(self) -> String {
        self.0.text().await.expect("response body")
    }

    /// Asserts a problem+json answer with `status` and `code` (see
    /// [`super::assert_problem`]); returns the body.
    pub async fn problem(self, status: u16, code: &str) -> Value {
        super::assert_problem(self.0, status, code).await
    }

    /// The underlying response.
    pub fn into_inner(self) -> reqwest::Response {
        self.0
    }
}

impl From<Res> for reqwest::Response {
    fn from(res: Res) -> Self {
        res.0
    }
}
