"""Keep one symbol's L2 order book from feedsim's ZeroMQ feed: a snapshot, then diffs.

usage: python examples/zmq_order_book.py [ENDPOINT] [SYMBOL] [UPDATES] [CONTROL_ENDPOINT]
"""

import sys

import orjson
import zmq

from marketdata import wire
from marketdata.books import OrderBook, Status, book_from_dict
from marketdata.symbols import canonical

args = sys.argv[1:]
endpoint = args[0] if args else "tcp://127.0.0.1:5555"
symbol = canonical(args[1] if len(args) > 1 else "BTC-USD")  # btc/usd -> BTC-USD
updates = int(args[2]) if len(args) > 2 else 10
control_endpoint = args[3] if len(args) > 3 else "tcp://127.0.0.1:5556"

context = zmq.Context()
socket = context.socket(zmq.SUB)
socket.setsockopt(zmq.SUBSCRIBE, wire.book_topic(symbol))  # b"BTC-USD:book": snapshots + diffs
socket.connect(endpoint)  # feedsim answers the subscription with a snapshot (late join)
control = context.socket(zmq.DEALER)
control.connect(control_endpoint)
book = OrderBook(symbol)
shown = 0
while shown < updates:
    message = wire.decode_message(socket.recv_multipart())
    if message is None or isinstance(message, wire.TickBatch):
        continue  # a kind this reader does not know, or ticks (a wider subscription)
    outcome = book.apply(message)
    if outcome.status is Status.GAP:
        # Diffs went missing: fetch the book now rather than wait for the periodic snapshot.
        # Diffs that arrive meanwhile are kept and applied on top of it.
        print(f"gap: {outcome.missed} updates missed; resyncing")
        control.send(orjson.dumps({"cmd": "book", "symbol": symbol}))
        book.apply(book_from_dict(orjson.loads(control.recv())))
    if outcome.status is Status.APPLIED:
        bid, ask = book.bids[0], book.asks[0]
        print(f"{symbol} book_seq={book.book_seq} tick_seq={book.tick_seq} "
              f"best {bid['size']} @ {bid['price']} / {ask['size']} @ {ask['price']} "
              f"({len(book.bids)}x{len(book.asks)} levels)")
        shown += 1
