"""Subscribe to one symbol on feedsim's ZeroMQ PUB socket and print its ticks.

usage: python examples/zmq_subscriber.py [ENDPOINT] [SYMBOL] [COUNT]
"""

import sys

import zmq

from marketdata import wire
from marketdata.sequence import SequenceTracker
from marketdata.symbols import canonical

args = sys.argv[1:]
endpoint = args[0] if args else "tcp://127.0.0.1:5555"
symbol = canonical(args[1] if len(args) > 1 else "BTC-USD")  # btc/usd -> BTC-USD
count = int(args[2]) if len(args) > 2 else 10

socket = zmq.Context().socket(zmq.SUB)
socket.setsockopt(zmq.SUBSCRIBE, wire.topic(symbol))  # b"BTC-USD:tick": its ticks only
socket.connect(endpoint)
tracker = SequenceTracker()  # drops a last-value replay already seen; counts gaps
printed = 0
while printed < count:
    observed = tracker.observe(wire.decode(socket.recv_multipart()))
    if observed.missed:
        print(f"gap: {observed.missed} ticks missed")
    for tick in observed.fresh.ticks if observed.fresh else []:
        print(f"{symbol} seq={tick['seq']} bid={tick['bid']} ask={tick['ask']} "
              f"last={tick['last']} ts_ns={tick['ts_ns']}")
        printed += 1
