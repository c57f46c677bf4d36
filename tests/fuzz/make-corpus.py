#!/usr/bin/env python3
"""make-corpus.py — regenerate the seed corpus in tests/fuzz/corpus/{wire,cli}.

Valid and near-valid inputs in the layout fuzz_wire.c / fuzz_cli.c expect
(first byte selects the decoder; see the comments there). Run from anywhere:
    python3 tests/fuzz/make-corpus.py
The files are small and checked in; this script only documents how they
were made and lets them be rebuilt when a wire format changes."""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))
W = os.path.join(here, "corpus", "wire")
C = os.path.join(here, "corpus", "cli")

SECRET = bytes([0x9a, 0x11, 0x02, 0xfe, 0x33, 0x44, 0x55, 0x66,
                0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])  # fuzz_wire.c job_secret
HELLO_MAGIC = 0x48504232
TRAILER_MAGIC = 0x50324243
DESC_MAGIC, MSG_MAGIC, INFO_MAGIC = 0x50424431, 0x50424d31, 0x50425631


def u8(v): return struct.pack("<B", v)
def u16(v): return struct.pack("<H", v)
def u32(v): return struct.pack("<I", v & 0xffffffff)
def u64(v): return struct.pack("<Q", v)


def rotl(v, r): return ((v << r) | (v >> (32 - r))) & 0xffffffff
def check4(m, a, b, c): return m ^ rotl(a, 5) ^ rotl(b, 13) ^ rotl(c, 23) ^ 0x9e3779b9


def hello(frm, to, secret=SECRET, magic=HELLO_MAGIC, ver=1):
    return u32(magic) + u32(ver) + u32(frm) + u32(to) + secret


def hdr(t, slot, tag, ln, ver=1):
    return bytes([t, ver, 0, 0]) + u32(slot) + u32(tag) + u32(ln)


def desc(slot, tag, ln): return u32(slot) + u32(tag) + u32(ln) + u32(check4(DESC_MAGIC, slot, tag, ln))
def msg(t, v): return u32(t) + u32(v) + u32(0) + u32(check4(MSG_MAGIC, t, v, 0))


def info(nslots=8, slot_size=1 << 20, pool=0x7f0000000000, desc_addr=0x7f1000000000, status=0, reason=b""):
    b = bytearray(256)
    struct.pack_into("<III", b, 0, INFO_MAGIC, 1, status)
    b[12:12 + len(reason)] = reason
    o = 12 + 176
    struct.pack_into("<IIQQIQIIHBBB", b, o, 2, nslots, slot_size, pool, 0x1234, desc_addr, 0x5678, 64,
                     7, 1, 2, 3)
    o += 4 + 4 + 8 + 8 + 4 + 8 + 4 + 4 + 2 + 1 + 1 + 1
    b[o:o + 16] = bytes(range(16))
    return bytes(b)


def wire():
    f = {}
    # 0: hello — self u16, nleaders u16, own-secret flag, why-length selector, 32 bytes
    f["hello-valid"] = u8(0) + u16(2) + u16(4) + u8(0) + u8(3) + hello(1, 2)
    f["hello-wrong-secret"] = u8(0) + u16(2) + u16(4) + u8(0) + u8(3) + hello(1, 2, bytes(16))
    f["hello-http"] = u8(0) + u16(1) + u16(3) + u8(0) + u8(0) + b"GET / HTTP/1.1\r\nHost: x:4242\r\n\r\n"
    f["hello-wrong-leader"] = u8(0) + u16(2) + u16(4) + u8(0) + u8(2) + hello(7, 2)
    # 1: headers — nslots u32, slot_size u64, realistic flag, why, then 16-byte headers
    f["hdr-stream"] = (u8(1) + u32(8) + u64(65560) + u8(1) + u8(3) + hdr(2, 3, 0, 0) + hdr(1, 3, 17, 65560)
                       + hdr(3, 1, 0, 0))
    f["hdr-bad"] = (u8(1) + u32(8) + u64(4096) + u8(0) + u8(1) + hdr(1, 8, 0, 10) + hdr(1, 0, 0, 4097)
                    + hdr(2, 1, 0, 5) + hdr(9, 0, 0, 0) + hdr(1, 0, 0, 1, ver=2))
    # 2: trailer — file u64, chunk u32, nrecv u16, tag u32, evlen u32, slot_size u24, slot bytes
    payload = b"\x42" * 100
    tr = u64(0x0123456789abcdef) + u32(5) + u32(100) + u32(TRAILER_MAGIC) + u32(0)
    f["trailer-valid"] = (u8(2) + u64(5 * 4096 + 100) + u32(4096) + u16(3) + u32(5) + u32(124)
                          + struct.pack("<I", 200)[:3] + payload + tr)
    # 3: verbs descriptor — imm u32, nslots u32, slot_size u64, why, 16 bytes
    f["vw-desc"] = u8(3) + u32(3) + u32(8) + u64(4096) + u8(3) + desc(3, 99, 4096)
    # 4: verbs control message — len u8, force-16 flag, why, 16 bytes
    f["vw-msg"] = u8(4) + u8(16) + u8(1) + u8(3) + msg(1, 5)
    # ... or packed by the target: how=0x05 a credit, how=0x03 type from input (7: unknown)
    f["vw-msg-packed"] = u8(4) + u8(16) + u8(1) + u8(3) + bytes(16) + u8(0x03) + u32(7) + u32(1)
    # 5: verbs endpoint info + put plans
    puts = b"".join(u32(s) + u32(t) + u32(l) + u32(o) for s, t, l, o in
                    [(1, 2, 100, 0), (7, 3, 1 << 20, 0), (8, 0, 1, 0), (0, 0, 50, 4000)])
    f["vw-info"] = u8(5) + u8(3) + info() + u16(4095) + puts
    f["vw-info-failed"] = u8(5) + u8(3) + info(status=1, reason=b"no RDMA device")
    # 6: set-up round 1, an offer — why, self u8, info + {peer, qpn, psn}, then a failure reason
    def ent(p, q, s): return u32(p) + u32(q) + u32(s)
    f["vw-offer"] = u8(6) + u8(40) + u8(2) + info() + ent(2, 0x201, 23) + b"device mlx5_0 port 1 is down"
    f["vw-offer-other"] = u8(6) + u8(40) + u8(3) + info() + ent(2, 0x201, 23)
    # 7: set-up round 2, an echo — why, {sent to us, got from us}, then ours: sent, got (u8 each)
    f["vw-echo"] = u8(7) + u8(40) + ent(1, 5, 7) + ent(2, 3, 4) + u8(2) + u8(3) + u8(4) + u8(1) + u8(5) + u8(7)
    f["vw-echo-bad"] = u8(7) + u8(40) + ent(1, 5, 7) + ent(2, 3, 9) + u8(2) + u8(3) + u8(4) + u8(1) + u8(5) + u8(7)
    # 8: completions — npeers, nslots, slot_size u32, depth, peer nslots, desc table, recv bufs,
    #    outstanding sends, then cqes
    npeers, nslots, depth = 2, 4, 2
    body = u8(npeers - 1) + u8(nslots - 1) + u32(65559) + u8(depth - 1) + u8(4) + u8(4)
    body += desc(0, 11, 1000) + bytes(16) + desc(2, 12, 65560) + bytes(16)
    body += msg(1, 3) + msg(2, 77) + msg(1, 9) + bytes(16)
    body += u8(1) + u8(1)
    # sel: kind=(sel&3)+1, link=(sel>>2)%npeers, ok unless 0x40
    cq = b""
    # per cqe: sel, seq u16 (or wr_id u64 when sel & 0x80), vendor_err u16, op u8 (1 send done,
    # 2 recv, 3 recv with immediate), imm u32, byte_len flag u8 (odd: 16), extras u8 (1: the peer
    # writes a descriptor {imm, tag u32, len u32}; 2: the peer sends a control message
    # {link u8, buffer u8, type u8, value u32})
    cq += u8(0) + u16(0) + u16(0) + u8(3) + u32(0) + u8(1) + u8(0)        # RECV_IMM slot 0
    cq += u8(0) + u16(1) + u16(0) + u8(2) + u32(0) + u8(1) + u8(0)        # RECV notify, buffer 1
    cq += u8(0) + u16(0) + u16(0) + u8(2) + u32(0) + u8(1) + u8(0)        # RECV credit, buffer 0
    cq += u8(2) + u16(0) + u16(0) + u8(1) + u32(0) + u8(1) + u8(0)        # DATA write done
    cq += (u8(0) + u16(2) + u16(0) + u8(3) + u32(2) + u8(1) + u8(3) + u32(9) + u32(500)
           + u8(1) + u8(1) + u8(1) + u32(2))                                # fresh desc + credit msg
    cq += u8(0x44) + u16(0) + u16(0x99) + u8(2) + u32(0) + u8(1) + u8(0)  # failed recv on link 1
    cq += u8(0x80) + u64(0xffffffffffffffff) + u16(0) + u8(1) + u32(0) + u8(1) + u8(0)
    f["vw-cqe"] = u8(8) + body + cq
    # 9: link accounting ops
    f["vw-link"] = u8(9) + u8(8) + bytes([0, 0x10, 0, 3, 3, 4, 1, 2]) + bytes(5) + bytes([5]) + u64(3 << 60 | 5 << 36 | 77)
    return f


def cli():
    f = {}
    A = lambda *a: u8(0) + b"\n".join(a)
    f["ok-basic"] = A(b"-c", b"4M", b"--slots=16", b"/lustre/model.tar", b"/tmp/model.tar")
    f["ok-tcp"] = A(b"--transport=tcp", b"--tcp-if=10.0.0.0/8", b"-q", b"--timeout=2.5", b"a", b"b.%r")
    f["ok-perrank"] = A(b"--per-rank", b"-f", b"--json=/tmp/r.json", b"--root=3", b"/x", b"/tmp/%h/%%/y.%r")
    f["ok-verbs"] = A(b"-t", b"verbs", b"--rdma-dev=mlx5_0:1", b"--gid-index=3", b"-v", b"s", b"d")
    f["bad-quiet-verbose"] = A(b"-q", b"-v", b"a", b"b")
    f["bad-missing-arg"] = A(b"a", b"b", b"--root")
    f["bad-range"] = A(b"--gid-index=300", b"--slots=2", b"--chunk-size=1K", b"a", b"b")
    f["bad-placeholder"] = A(b"--timeout=nan", b"a", b"b%q")
    f["bad-conflict"] = A(b"--transport=mpi", b"--rdma-dev=mlx5_0", b"--tcp-if=eth0", b"a", b"b")
    f["help"] = A(b"--help") + b"\n" + b"--version"
    f["sizes"] = u8(1) + b"\n".join([b"4M", b"512k", b"1GiB", b"65536", b"16T", b"18446744073709551615",
                                      b"17179869184G", b"4KB", b"1MiB", b"", b"-1", b"0"])
    f["expand"] = u8(2) + b"/tmp/%h/file.%r\nnode01\n7\n64"
    f["expand-bad"] = u8(2) + b"/a/b%\nh\n-3\n10"
    return f


M = os.path.join(here, "corpus", "manifest")


def manifest():
    """Directory-tree manifests (dirtree.h): a valid tree, and near-valid hostile ones."""
    def attrs(mode): return u32(mode) + u32(0) + u32(0) + u64(978307200) + u32(0)
    def head(n): return b"P2PBTREE" + u32(1) + attrs(0o755) + u64(n) + u64(0)
    def ent(t, mode, path, tail=b""): return u8(t) + attrs(mode) + u16(len(path)) + path + tail
    def fil(path, size, ext): return ent(2, 0o644, path, u64(size) + u32(len(ext)) + b"".join(u64(o) + u64(l) for o, l in ext))
    f = {}
    f["ok-tree"] = head(7) + ent(1, 0o700, b"a") + fil(b"a/f", 10, [(0, 10)]) + fil(b"a/sparse", 1000, [(100, 5), (900, 100)]) \
        + ent(4, 0, b"a/z", u64(1)) + ent(3, 0o777, b"b", u16(3) + b"../") + fil(b"c d", 0, []) + ent(1, 0o755, b"e")
    f["ok-empty"] = head(0)
    f["bad-dotdot"] = head(1) + fil(b"../x", 1, [(0, 1)])
    f["bad-through-link"] = head(2) + ent(3, 0o777, b"l", u16(4) + b"/etc") + fil(b"l/passwd", 1, [(0, 1)])
    f["bad-order"] = head(2) + fil(b"b", 1, [(0, 1)]) + fil(b"a", 1, [(0, 1)])
    return f


for d, files in ((W, wire()), (C, cli()), (M, manifest())):
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(data)
print("wrote", len(wire()), "wire,", len(cli()), "cli and", len(manifest()), "manifest seeds")
