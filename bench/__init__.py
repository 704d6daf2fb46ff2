"""The side-by-side benchmark of issue 14: this service, a bare aio-pika + asyncpg pipeline and
Celery on one embedded stack, in one run (`python -m bench`, see the README's Benchmark section).

Not part of the test suite: a full run takes minutes and loads the whole machine.
"""
