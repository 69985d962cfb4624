"""Read snapshots and stream prices from the bridge over gRPC, as a risk monitor would.

usage: python examples/grpc_client.py [TARGET] [COUNT]
"""

import sys
import time

import grpc

from marketdata import marketdata_pb2 as pb
from marketdata import marketdata_pb2_grpc as pb_grpc

target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
with grpc.insecure_channel(target) as channel:
    stub = pb_grpc.MarketDataServiceStub(channel)
    print(stub.GetPrice(pb.GetPriceRequest(symbol="BTC-USD")))

    book = stub.GetOrderBook(pb.GetOrderBookRequest(symbol="BTC-USD", depth=5))
    print(f"book {book.book_seq} at tick {book.tick_seq}:")
    for bid, ask in zip(book.bids, book.asks, strict=True):
        print(f"  {bid.size:>10.5f} @ {bid.price:<12.2f} | {ask.price:>12.2f} @ {ask.size:.5f}")

    for trade in stub.GetTrades(pb.GetTradesRequest(symbol="BTC-USD", limit=5)).trades:
        side = pb.Side.Name(trade.side).removeprefix("SIDE_").lower()
        print(f"trade seq={trade.seq} {side} {trade.size} @ {trade.price}")

    minute_ago = time.time_ns() - 60_000_000_000
    history = stub.GetHistory(pb.GetHistoryRequest(symbol="ETH-USD", start_ns=minute_ago))
    print(f"ETH-USD: {len(history.ticks.seq)} ticks in the last minute (first 1,000)")
    for candle in stub.GetCandles(pb.GetCandlesRequest(symbol="ETH-USD", interval="1m",
                                                       limit=3)).candles:
        print(f"1m candle {candle.open_time_ms}: O {candle.open} H {candle.high} "
              f"L {candle.low} C {candle.close} V {candle.volume:.4f} ({candle.trades} trades)")

    request = pb.StreamPricesRequest(symbols=["BTC-USD", "ETH-USD"])
    for n, update in enumerate(stub.StreamPrices(request)):
        print(f"{update.symbol} seq={update.seq} bid={update.bid} ask={update.ask} "
              f"price={update.price:.3f} ts={update.timestamp}")
        if n + 1 >= 2 * count:
            break
