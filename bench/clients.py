"""Exactly N orders from C keep-alive clients, in a process of its own (``wrk`` stops by time,
not by count): each client a thread with one ``http.client`` connection.

    python -m bench.clients URL[,URL...] API_KEY BODY COUNT CLIENTS

Client i sends to the i-th URL, round the list: several api daemons share the clients. BODY
holds ``ORDERID``, replaced by a new id each order. Prints one JSON line: ``started``
(``time.monotonic()`` just before the first request, comparable across processes here),
``finished``, the statuses answered (``{"202": N}`` when all went well) and the errors.
"""

import http.client
import json
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


def client(url: str, headers: dict[str, str], bodies: list[str], statuses: Counter[str]) -> None:
    """Send ``bodies`` one after another on one connection, reopened if the server drops it."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    for body in bodies:
        try:
            connection.request("POST", "/t2mobile/fulfilment", body, headers)
            answer = connection.getresponse()
            answer.read()
            status = str(answer.status)
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
            connection.close()
        statuses[status] += 1
    connection.close()


def main() -> None:
    urls, key, body, count, clients = sys.argv[1:6]
    bases = urls.split(",")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    orders = [body.replace("ORDERID", f"{n:07d}") for n in range(int(count))]
    tallies: list[Counter[str]] = [Counter() for _ in range(int(clients))]  # one a thread
    threads = [
        threading.Thread(
            target=client,
            args=(bases[i % len(bases)], headers, orders[i :: len(tallies)], tally),
        )
        for i, tally in enumerate(tallies)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = time.monotonic()
    statuses = sum(tallies, Counter())
    print(json.dumps({"started": started, "finished": finished, "statuses": dict(statuses)}))


if __name__ == "__main__":
    main()
