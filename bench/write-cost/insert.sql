INSERT INTO bench_insert (payload) VALUES ('{}');
