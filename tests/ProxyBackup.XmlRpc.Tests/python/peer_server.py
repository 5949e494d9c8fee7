"""A Python xmlrpc.server peer for the interop tests: prints its port, serves until stdin closes."""
import sys, threading, datetime
from socketserver import ThreadingMixIn
from xmlrpc.server import SimpleXMLRPCServer, SimpleXMLRPCRequestHandler
from xmlrpc.client import Fault

class Handler(SimpleXMLRPCRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as oned (xmlrpc-c) serves


class Server(ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), requestHandler=Handler, allow_none=True, logRequests=False, use_builtin_types=True)

def echo(*args):
    return list(args) if len(args) != 1 else args[0]

def describe(value):
    """Names the Python type the value arrived as, so the test sees how our bytes were read."""
    def d(v):
        if v is None: return "nil"
        if isinstance(v, bool): return "boolean"
        if isinstance(v, int): return "int"
        if isinstance(v, float): return "double"
        if isinstance(v, str): return "string"
        if isinstance(v, (bytes, bytearray)): return "base64"
        if isinstance(v, datetime.datetime): return "dateTime"
        if isinstance(v, dict): return {k: d(x) for k, x in v.items()}
        if isinstance(v, list): return [d(x) for x in v]
        return type(v).__name__
    return d(value)

def fail(code, message):
    raise Fault(code, message)

def big(n):
    return "\u00e9x<&>" * n

def all_types():
    return {"int": 42, "negative": -7, "bool": True, "string": "h\u00e9llo <&> \"q\" 'a'",
            "double": 3.25, "when": datetime.datetime(2025, 1, 2, 3, 4, 5), "bytes": b"\x00\x01\xffbin",
            "nil": None, "list": [1, "two", [3.0, {"four": 4}]], "empty": "", "emptylist": [], "emptystruct": {}}

for f in (echo, describe, fail, big, all_types):
    server.register_function(f)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_address[1], flush=True)
sys.stdin.read()
