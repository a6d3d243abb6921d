"""The city simulator behind `python manage.py simulate`: riders and customers driving the real
HTTP and WebSocket API of a running server (docs/simulator.md).

- geo: places, the activity zone, street-like routes and how riders move along them;
- stats: counters, errors by kind and call latencies, and the summary;
- api: the HTTP client (429 Retry-After, token refresh), sessions and the token cache file;
- database: the few reads and writes done straight on the server's database (the SMS outbox,
  approving the simulator's own riders), in one thread of their own;
- signin: phone OTP sign-in through the API, paced under the server's throttles;
- riders, customers: the two kinds of app;
- run: the whole simulation, its options and its shutdown.
"""
