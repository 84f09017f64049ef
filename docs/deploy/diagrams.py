#!/usr/bin/env python3
"""Draws the topology diagrams of docs/deploy.md as SVG files.

    python3 docs/deploy/diagrams.py [OUTPUT_DIR]

writes mqtt-bridge.svg, haproxy.svg, nginx-grpc.svg and scale-out.svg
(into docs/deploy/ by default).  Plain SVG written by hand: boxes, arrows
and labels, no drawing library.
"""
import os
import sys
from xml.sax.saxutils import escape

FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"
COLOURS = {
    "server": ("#dbeafe", "#1e40af"),
    "client": ("#dcfce7", "#166534"),
    "broker": ("#fef3c7", "#92400e"),
    "proxy": ("#fce7f3", "#9d174d"),
    "note": ("#f3f4f6", "#374151"),
}


class Drawing:
    def __init__(self, width, height, title):
        self.width = width
        self.height = height
        self.items = []
        self.text(width / 2, 26, title, size=17, weight="bold")

    def box(self, x, y, w, h, kind, lines):
        fill, stroke = COLOURS[kind]
        self.items.append(
            f"<rect x='{x}' y='{y}' width='{w}' height='{h}' rx='8' fill='{fill}' "
            f"stroke='{stroke}' stroke-width='1.5'/>")
        top = y + h / 2 - (len(lines) - 1) * 8
        for i, line in enumerate(lines):
            self.text(x + w / 2, top + i * 16 + 5, line, size=13 if i == 0 else 11,
                      weight="bold" if i == 0 else "normal", colour=stroke)
        return (x, y, w, h)

    def text(self, x, y, s, size=12, weight="normal", colour="#111827", anchor="middle"):
        self.items.append(
            f"<text x='{x}' y='{y}' {FONT} font-size='{size}' font-weight='{weight}' "
            f"fill='{colour}' text-anchor='{anchor}'>{escape(s)}</text>")

    def arrow(self, a, b, label="", both=False, dashed=False, colour="#374151"):
        """An arrow from the edge of box a to the edge of box b."""
        (x1, y1), (x2, y2) = edge(a, b), edge(b, a)
        dash = " stroke-dasharray='6,4'" if dashed else ""
        start = " marker-start='url(#back)'" if both else ""
        self.items.append(
            f"<line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' stroke='{colour}' "
            f"stroke-width='1.6'{dash} marker-end='url(#head)'{start}/>")
        if label:
            self.text((x1 + x2) / 2, (y1 + y2) / 2 - 8, label, size=11, colour="#4b5563")

    def svg(self):
        defs = (
            "<defs>"
            "<marker id='head' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='8' "
            "markerHeight='8' orient='auto'><path d='M0,0 L10,5 L0,10 z' fill='#374151'/></marker>"
            "<marker id='back' viewBox='0 0 10 10' refX='1' refY='5' markerWidth='8' "
            "markerHeight='8' orient='auto'><path d='M10,0 L0,5 L10,10 z' fill='#374151'/></marker>"
            "</defs>")
        return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{self.width}' "
                f"height='{self.height}' viewBox='0 0 {self.width} {self.height}'>\n"
                f"<rect width='100%' height='100%' fill='white'/>\n{defs}\n"
                + "\n".join(self.items) + "\n</svg>\n")


def edge(a, b):
    """Where the line from the centre of box a towards box b's centre leaves a."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    cx, cy = ax + aw / 2, ay + ah / 2
    dx, dy = bx + bw / 2 - cx, by + bh / 2 - cy
    if dx == 0 and dy == 0:
        return cx, cy
    sx = (aw / 2) / abs(dx) if dx else float("inf")
    sy = (ah / 2) / abs(dy) if dy else float("inf")
    s = min(sx, sy)
    return cx + dx * s, cy + dy * s


def mqtt_bridge():
    d = Drawing(760, 470, "MQTT across a mosquitto bridge (tests/deploy/mosquitto-*.conf)")
    hub = d.box(300, 190, 160, 64, "broker", ["hub broker", "mosquitto-hub.conf"])
    leaf1 = d.box(60, 190, 160, 64, "broker", ["leaf broker 1", "mosquitto-leaf.conf"])
    leaf2 = d.box(540, 190, 160, 64, "broker", ["leaf broker 2", "mosquitto-leaf.conf"])
    d.arrow(leaf1, hub, "bridge", both=True)
    d.arrow(leaf2, hub, "bridge", both=True)
    s0 = d.box(300, 60, 160, 56, "server", ["server (app 0)", "topics c2s/ s2c/"])
    s1 = d.box(60, 60, 160, 56, "server", ["server (app 1)", "prefix app1/"])
    s2 = d.box(540, 60, 160, 56, "server", ["server (app 2)", "prefix app2/"])
    d.arrow(s0, hub, both=True)
    d.arrow(s1, leaf1, both=True)
    d.arrow(s2, leaf2, both=True)
    for x, b in ((60, leaf1), (300, hub), (540, leaf2)):
        c = d.box(x, 330, 160, 52, "client", ["clients", "of any application"])
        d.arrow(c, b, both=True)
    d.text(380, 420, "Bridged topics, both ways, QoS 1: c2s/#, s2c/#, nq/lost/# and the same "
           "under one prefix level (+/c2s/# ...).", size=12)
    d.text(380, 442, "A peer's will (nq/lost/<hex>) crosses the bridge like any message: a "
           "killed peer is noticed on every broker.", size=12)
    return d


def proxied(title, client_line, proxy_lines, server_line, legs, notes):
    """Three clients, a proxy, two libnq servers; legs labels the two sides."""
    d = Drawing(760, 370, title)
    clients = [d.box(40, 80 + i * 80, 150, 52, "client", [f"client {i + 1}", client_line])
               for i in range(3)]
    proxy = d.box(295, 140, 185, 96, "proxy", proxy_lines)
    servers = [d.box(585, 100 + i * 120, 150, 56, "server",
                     [f"libnq server {i + 1}", server_line]) for i in range(2)]
    for c in clients:
        d.arrow(c, proxy, both=True)
    for s in servers:
        d.arrow(proxy, s, both=True)
    d.text(215, 60, legs[0], size=11, colour="#4b5563")
    d.text(585, 60, legs[1], size=11, colour="#4b5563")
    for k, line in enumerate(notes):
        d.text(380, 326 + 20 * k, line, size=12)
    return d


def haproxy():
    return proxied(
        "TCP and TLS through haproxy (tests/deploy/haproxy.cfg)", "nq TCP / TLS",
        ["haproxy", "mode tcp", "balance leastconn"], "holds the TLS key",
        ("bytes in, bytes out", "TLS passes through"),
        ["Each connection stays on the server haproxy picked for it. Clients check the "
         "servers' own",
         "certificates; a FIN, or a killed client, reaches the server as it would directly."])


def nginx():
    return proxied(
        "gRPC through nginx (tests/deploy/nginx-grpc*.conf)", "nq-id: <own id>",
        ["nginx", "grpc_pass", "hash $http_nq_id", "consistent"], "gRPC, streaming",
        ("h2c, or TLS with nginx's certificate", "h2c, or TLS again (grpcs://)"),
        ["One bidirectional stream per client (/grpc/comm), routed by the nq-id metadata "
         "every call",
         "carries: a client that calls again, with the same id, reaches the same server."])


def scale_out():
    d = Drawing(760, 330, "Scaling out: N servers behind one address, or M brokers in one fabric")
    lb = d.box(60, 70, 160, 56, "proxy", ["haproxy / nginx", "one address"])
    for i in range(3):
        label = "server N" if i == 2 else f"server {i + 1}"
        s = d.box(20 + i * 90, 190, 80, 48, "server", [label])
        d.arrow(lb, s)
    d.text(150, 270, "independent servers: each client has one", size=11)
    d.text(150, 286, "of them for its connection's life", size=11)
    hub = d.box(470, 70, 140, 52, "broker", ["hub broker"])
    for i in range(3):
        label = "broker M" if i == 2 else f"broker {i + 1}"
        b = d.box(390 + i * 110, 190, 90, 48, "broker", [label])
        d.arrow(b, hub, both=True)
    d.text(540, 270, "every broker carries each message once per", size=11)
    d.text(540, 286, "bridge it crosses; the hub carries them all", size=11)
    return d


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for name, draw in (("mqtt-bridge", mqtt_bridge), ("haproxy", haproxy),
                       ("nginx-grpc", nginx), ("scale-out", scale_out)):
        with open(os.path.join(out, name + ".svg"), "w", encoding="utf-8") as f:
            f.write(draw().svg())


if __name__ == "__main__":
    main()
