"""A bare Flask "hello" on the daemon's HTTP server, built by ``httpserver.build`` with the
``server.*`` settings of the config file given: the ceiling intake's throughput is held to.

    python -m bench.hello CONFIG

Logs ``listening on http://HOST:PORT`` on stderr once it accepts; SIGTERM ends it.
"""

import sys
from pathlib import Path

from flask import Flask

from t2ctl import config, httpserver


def app() -> Flask:
    hello = Flask("hello")

    @hello.get("/hello")
    def answer() -> str:
        return "hello"

    return hello


def main() -> None:
    settings = config.load(Path(sys.argv[1]))
    server = httpserver.build(app(), settings.server, host="127.0.0.1", port=0)
    print(f"listening on http://127.0.0.1:{server.effective_port}", file=sys.stderr, flush=True)
    server.run()


if __name__ == "__main__":
    main()
