#!/usr/bin/env python3
"""Import cycles between the source files of src/ (non-test code).

Builds the file-level graph of `crate::`, `super::` and `self::` paths and
prints every strongly connected component; exits 1 when there is one.
Usage: contrib/dev/import-cycles.py [SRC_DIR]   (run by .ci/run)
"""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
mods = {}  # module path tuple -> file
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p = os.path.join(dp, f)
        rel = os.path.relpath(p, root)[:-3].split(os.sep)
        if rel[-1] in ('mod', 'lib', 'main'): rel = rel[:-1]
        if rel and rel[-1] == 'tests' or any(x.endswith('tests') for x in rel): continue
        mods[tuple(rel)] = p
def resolve(cur, path):
    parts = path.split('::')
    if parts[0] == 'crate': base = (); parts = parts[1:]
    elif parts[0] == 'super':
        base = cur
        while parts and parts[0] == 'super': base = base[:-1]; parts = parts[1:]
    elif parts[0] == 'self': base = cur; parts = parts[1:]
    else: return None
    best = None
    for i in range(len(parts) + 1):
        cand = base + tuple(parts[:i])
        if cand in mods: best = cand
    return best
graph = {}
for m, p in mods.items():
    text = open(p).read()
    text = re.split(r'#\[cfg\(test\)\]\s*mod tests\s*\{', text)[0]
    deps = set()
    # expand use groups crudely: take every path-like token starting with crate/super/self
    for tok in re.findall(r'\b((?:crate|super|self)(?:::\w+)+)', text):
        d = resolve(m, tok)
        if d is not None and d != m and not (len(d) < len(m) and m[:len(d)] == d and False): deps.add(d)
    for tok in re.findall(r'use\s+(crate|super)::\{([^}]*)\}', text):
        for part in tok[1].split(','):
            part = part.strip().split(' ')[0]
            if not part: continue
            d = resolve(m, tok[0] + '::' + part.replace('{', ''))
            if d is not None and d != m: deps.add(d)
    # a parent module declaring its child is not an import
    graph[m] = {d for d in deps if d != ()}
# Tarjan SCC
idx = {}; low = {}; st = []; on = set(); out = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in graph.get(v, ()):
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: out.append(comp)
for v in graph:
    if v not in idx: sc(v)
for comp in out:
    print('cycle:', ' '.join('::'.join(x) for x in comp))
    for a in comp:
        for b in graph[a]:
            if b in comp: print('   ', '::'.join(a), '->', '::'.join(b))
if not out: print('no cycles')
sys.exit(1 if out else 0)
