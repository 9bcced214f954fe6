# Tokenizes all split files once with the Python port of the e5.c tokenizer (query: prefix, no truncation).
import os
HERE = os.path.dirname(os.path.abspath(__file__))
import sys, json, time
src = open(os.path.join(HERE, 'e5q4.py')).read().split('import torch, torch.nn')[0]
ns = {}; exec(src, ns)
f = ns['Q4File'](os.path.join(os.environ['MESH_E5_MODEL'], 'e5-small-q4.bin'))
for name in sys.argv[1:]:
    t = time.time()
    rows = [json.loads(l) for l in open(f'{HERE}/data/{name}.jsonl')]
    with open(f'{HERE}/data/{name}.tok.json', 'w') as o:
        json.dump([f.tokenize(r['text']) for r in rows], o)
    print(name, len(rows), round(time.time() - t, 1), flush=True)
