"""Stream prices from the bridge over gRPC, as a risk monitor would.

usage: python examples/grpc_client.py [TARGET] [COUNT]
"""

import sys

import grpc

from marketdata import marketdata_pb2 as pb
from marketdata import marketdata_pb2_grpc as pb_grpc

target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
with grpc.insecure_channel(target) as channel:
    stub = pb_grpc.MarketDataServiceStub(channel)
    print(stub.GetPrice(pb.GetPriceRequest(symbol="BTC-USD")))
    request = pb.StreamPricesRequest(symbols=["BTC-USD", "ETH-USD"])
    for n, update in enumerate(stub.StreamPrices(request)):
        print(f"{update.symbol} seq={update.seq} bid={update.bid} ask={update.ask} "
              f"price={update.price:.3f} ts={update.timestamp}")
        if n + 1 >= 2 * count:
            break
