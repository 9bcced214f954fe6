"""An S3 server on loopback for the durable test broker (tests/chaos.rs).

moto's S3 (Apache-2.0) served by werkzeug on ONE thread: tansu's S3 engine
relies on conditional writes (If-Match / If-None-Match on the ETag) to
allocate producer ids and move watermarks, and moto checks the condition
and writes in two steps, so two requests at once can both pass the check.
`python -m moto.server` serves requests on threads, and under the chaos
test's eight producers that race handed one producer id to two clients
(ProducerFenced from the start). One request at a time makes each
conditional write atomic.

Usage: python3 scripts/s3_server.py PORT
"""

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, app, threaded=False, use_reloader=False)


if __name__ == "__main__":
    main()
