"""The live dashboard of `GET /dashboard`: one snapshot of queues, tasks, failures, the DLQ and the
workers, built at most once a second and shared by every viewer, rendered by Jinja2 templates."""
