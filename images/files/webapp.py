"""training/webapp: says hello on port 5000."""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("Hello %s!" % os.environ.get("PROVIDER", "world")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("%s - - %s" % (self.client_address[0], fmt % args), flush=True)


if __name__ == "__main__":
    import signal, sys
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop quickly on `linkrt stop`
    print(" * Running on http://0.0.0.0:5000/", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 5000), Handler).serve_forever()
