"""A Python xmlrpc.client peer: calls our server and checks every answer; prints one JSON line."""
import sys, json, datetime
import xmlrpc.client

url = sys.argv[1]
p = xmlrpc.client.ServerProxy(url, allow_none=True, use_builtin_types=True)
results = {}
def check(name, got, want):
    results[name] = (got == want) or f"got {got!r}, want {want!r}"

check("int", p.echo(42), 42)
check("negative", p.echo(-2147483648), -2147483648)
check("bool", p.echo(True), True)
# Python writes CR raw, and XML parsers fold it: a limit of its encoding, so no CR here.
check("string", p.echo("h\u00e9llo <&> ]]> \"q\"\n\ttab"), "h\u00e9llo <&> ]]> \"q\"\n\ttab")
check("double", p.echo(-1.5e-300), -1.5e-300)
check("datetime", p.echo(datetime.datetime(1998, 7, 17, 14, 8, 55)), datetime.datetime(1998, 7, 17, 14, 8, 55))
check("bytes", p.echo(b"\x00\xff\x10binary"), b"\x00\xff\x10binary")
check("nil", p.echo(None), None)
nested = {"a": [1, {"b": [True, None, "x" * 1000]}], "c": {"d": {"e": 2.5}}, "empty": {}, "list": []}
check("nested", p.echo(nested), nested)
large = "\u00e9<&>" * 500000
check("large", p.echo(large), large)
check("i8", p.echo_i8(), 2**40)
check("types", p.types_seen(1, "s", True, 2.0, None, b"b", [1], {"k": 1}),
      ["int", "string", "boolean", "double", "nil", "base64", "array", "struct"])
try:
    p.fail(7, "boom <&>")
    results["fault"] = "no fault raised"
except xmlrpc.client.Fault as f:
    check("fault", (f.faultCode, f.faultString), (7, "boom <&>"))
try:
    p.no_such_method()
    results["unknown"] = "no fault raised"
except xmlrpc.client.Fault as f:
    check("unknown", f.faultCode, -506)
print(json.dumps(results))
