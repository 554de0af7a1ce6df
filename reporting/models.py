from django.db import models  # noqa: F401  (rollup models arrive with reports)
