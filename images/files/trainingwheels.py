"""jpetazzo/trainingwheels: counts hits in the Redis server at host "redis"."""
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def redis_incr(key):
    """INCR over the Redis protocol (RESP), to the host named "redis"."""
    with socket.create_connection(("redis", 6379), timeout=2) as c:
        c.sendall(b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(key), key))
        line = c.makefile("rb").readline()
    if not line.startswith(b":"):
        raise RuntimeError(line.decode(errors="replace").strip())
    return int(line[1:])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            hits = redis_incr(b"hits")
            status = 200
            body = ("<h1>Hello!</h1><p>This page has been viewed %d time(s).</p>"
                    "<p>Served by %s.</p>" % (hits, socket.gethostname()))
        except Exception as e:  # the seed's "red error page"
            status = 500
            body = ('<body style="background:red;color:white"><h1>Error</h1>'
                    "<p>Cannot connect to redis: %s</p></body>" % e)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print("%s - - %s" % (self.client_address[0], fmt % args), flush=True)


if __name__ == "__main__":
    import signal, sys
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop quickly on `linkrt stop`
    print(" * Running on http://0.0.0.0:5000/", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 5000), Handler).serve_forever()
