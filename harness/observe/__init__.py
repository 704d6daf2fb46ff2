"""Reading a live deployment: PostgreSQL and RabbitMQ into `harness.state` values, settling, sampling.

The only part of the harness (with the stack providers) that imports a database or broker driver;
the checker and the report read what this produces and never a store.
"""
