"""training/postgres stand-in: listens on 5432 and speaks just enough of the PostgreSQL
protocol to refuse a login (ErrorResponse), so clients see a real server."""
import socketserver


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.recv(8192)
        msg = b"SFATAL\0C28000\0Mlinkrt training/postgres stand-in: authentication is not supported\0\0"
        self.request.sendall(b"E" + (len(msg) + 4).to_bytes(4, "big") + msg)


if __name__ == "__main__":
    import signal, sys
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop quickly on `linkrt stop`
    print("LOG:  database system is ready to accept connections", flush=True)
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer(("0.0.0.0", 5432), Handler).serve_forever()
