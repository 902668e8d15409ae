"""platformdb: the data layer of the Campaign Lifecycle Platform.

PostgreSQL (OLTP), ClickHouse (analytics) and Redis (cache, sessions, rate
limits, queues): schemas, migrations, seed data and operations, plus the small
library that services import to use them correctly.
"""

from platformdb.errors import PlatformDBError

__all__ = ["PlatformDBError", "__version__"]
__version__ = "0.1.0"
