#!/usr/bin/env python3
"""Narrow `pub` to what the library's users need (CONTRIBUTING.md, The layer map).

Usage: contrib/dev/narrow-pub.py [--all]   (from the repository's root;
--all builds the fuzz crate in target/fuzz-check: delete it after)

1. `cargo fix --lib --tests` under lib.rs's `unreachable_pub` (with
   `unused_imports` allowed for the run, so only visibility changes): a
   `pub` no user can reach becomes what rustc suggests (pub(crate)/pub(super)).
2. With --all, also a `pub` the lint cannot see: a field or method of a type
   the API names that no user needs. Every `pub ` in src/ outside lib.rs
   becomes `pub(crate) `, then `pub` comes back where the compiler asks:
   items lib.rs re-exports (E0364/E0365), types named in an API signature
   (private_interfaces), methods and fields main, a test or a fuzz target
   uses (E0624/E0616/E0451/E0603); until `cargo test --no-run --all-targets` and,
   when nightly is installed, the fuzz crate check build.
3. cargo fmt. Then read the diff, and clippy shows the dead code revealed.
"""
import json, os, re, subprocess, sys

LIB = 'src/lib.rs'
ITEM = r'(?:(?:async|const|unsafe)\s+)*(?:fn|struct|enum|const|static|type|trait|mod)\s+'


def cargo_json(args):
    p = subprocess.run(['cargo'] + args + ['--message-format=json'],
                       capture_output=True, text=True)
    for line in p.stdout.splitlines():
        try:
            m = json.loads(line.replace(os.getcwd() + '/', ''))
        except ValueError:
            continue
        if m.get('reason') == 'compiler-message':
            yield m['message']


DONE = set()  # (file, line) widened in this pass: one `pub` per line


def widen_line(f, n):
    if (f, n) in DONE:
        return False
    DONE.add((f, n))
    lines = open(f).read().split('\n')
    if 'pub(crate) ' not in lines[n - 1]:
        return False
    lines[n - 1] = lines[n - 1].replace('pub(crate) ', 'pub ', 1)
    open(f, 'w').write('\n'.join(lines))
    return True


def mod_file(parts):
    p = os.path.join('src', *parts)
    for c in (p + '.rs', os.path.join(p, 'mod.rs')):
        if os.path.exists(c):
            return c
    return None


def widen_item(parts, name, depth=0):
    """Make the item `name` of module `parts` pub, following one `use`."""
    f = mod_file(parts)
    if f is None or depth > 3:
        return False
    s = open(f).read()
    m = re.search(r'^[ \t]*pub\(crate\) ' + ITEM + re.escape(name) + r'\b', s, re.M)
    if m:
        return widen_line(f, s[:m.start()].count('\n') + 1)
    u = re.search(r'^[ \t]*pub\(crate\) use ([\w:]+)::' + re.escape(name) + r'\s*;', s, re.M)
    if u:
        path = u.group(1).split('::')
        base = [] if path[0] == 'crate' else list(parts)
        path = path[1:] if path[0] in ('crate', 'self') else path
        return widen_item(base + path, name, depth + 1)
    return False


def reexports():
    """lib.rs's `pub use` paths: {(line, exported segment): (module parts, name)}."""
    text = open(LIB).read()
    out = {}
    for m in re.finditer(r'pub use ([^;]+);', text):
        line = text[:m.start()].count('\n') + 1
        body = re.sub(r'\s+', ' ', m.group(1))
        if '{' in body:
            prefix, group = body.split('{', 1)
            names = [g.strip() for g in group.rstrip('} ').split(',') if g.strip()]
            paths = [prefix.strip().rstrip(':').rstrip(':') + '::' + n for n in names]
        else:
            paths = [body]
        for p in paths:
            p = p.split(' as ')[0].strip()
            segs = [x for x in p.split('::') if x]
            if segs[0] == 'crate':
                segs = segs[1:]
            for k in range(line, line + m.group(0).count('\n') + 1):
                out[(k, segs[-1])] = (segs[:-1], segs[-1])
    return out


def widen_field(msg):
    m = re.match(r'fields? (.*) of struct `(?:[\w:]+::)?(\w+)` (?:is|are) private', msg)
    if not m:
        return False
    changed = False
    for field in re.findall(r'`(\w+)`', m.group(1)):
        changed |= widen_one_field(field, m.group(2))
    return changed


def widen_one_field(field, ty):
    if field.isdigit():  # a tuple struct's field: its place on the line
        for dp, _, fs in os.walk('src'):
            for fn in fs:
                f = os.path.join(dp, fn)
                lines = open(f).read().split('\n') if f.endswith('.rs') else []
                for n, line in enumerate(lines):
                    if re.match(r'pub struct ' + ty + r'\(', line):
                        parts = line.split('(', 1)[1].split(',')
                        k = int(field)
                        if k < len(parts) and parts[k].lstrip().startswith('pub(crate) '):
                            parts[k] = parts[k].replace('pub(crate) ', 'pub ', 1)
                            lines[n] = line.split('(', 1)[0] + '(' + ','.join(parts)
                            open(f, 'w').write('\n'.join(lines))
                            return True
        return False
    for dp, _, fs in os.walk('src'):
        for fn in fs:
            f = os.path.join(dp, fn)
            if not f.endswith('.rs'):
                continue
            s = open(f).read()
            d = re.search(r'^pub struct ' + ty + r'\b[^\n]*\{\n(.*?)^\}', s, re.M | re.S)
            if not d:
                continue
            fm = re.search(r'^[ \t]*pub\(crate\) ' + field + ':', d.group(1), re.M)
            if fm:
                n = s[:d.start(1)].count('\n') + d.group(1)[:fm.start()].count('\n') + 1
                return widen_line(f, n)
    return False


def widen_from(diags):
    exports = reexports()
    DONE.clear()
    changed = False
    for d in diags:
        code = (d.get('code') or {}).get('code')
        msg = d['message']
        spans = [(c['message'], s) for c in [d] + d['children'] for s in c['spans']]
        if code in ('E0364', 'E0365'):
            s = d['spans'][0]
            name = re.match(r'`(\w+)`', msg).group(1)
            key = (s['line_start'], name)
            if key in exports:
                changed |= widen_item(*exports[key])
        elif code in ('E0624', 'E0603'):
            for _, s in spans:
                if s['file_name'].startswith('src/') and 'defined here' in (s.get('label') or ''):
                    changed |= widen_line(s['file_name'], s['line_start'])
        elif code in ('E0616', 'E0451'):
            changed |= widen_field(msg)
        elif 'is more private than the item' in msg:
            for cm, s in spans:
                if cm.startswith('but ') and s['file_name'].startswith('src/'):
                    changed |= widen_line(s['file_name'], s['line_start'])
    return changed


def main():
    lib = open(LIB).read()
    assert '#![warn(unreachable_pub)]\n' in lib
    open(LIB, 'w').write(lib.replace('#![warn(unreachable_pub)]\n',
                                     '#![warn(unreachable_pub)]\n#![allow(unused_imports)]\n', 1))
    try:
        subprocess.run(['cargo', 'fix', '--lib', '--tests', '--allow-dirty'], check=True)
    finally:
        open(LIB, 'w').write(lib)
    if '--all' in sys.argv[1:]:
        for dp, _, fs in os.walk('src'):
            for fn in fs:
                f = os.path.join(dp, fn)
                if f == LIB or not f.endswith('.rs'):
                    continue
                out = []
                for line in open(f).read().split('\n'):
                    if not line.lstrip().startswith('//'):
                        line = re.sub(r'(^|[^\w])pub ', r'\1pub(crate) ', line)
                    out.append(line)
                open(f, 'w').write('\n'.join(out))
        nightly = subprocess.run(['rustup', 'run', 'nightly', 'rustc', '--version'],
                                 capture_output=True).returncode == 0
        while True:
            diags = list(cargo_json(['test', '--no-run', '--all-targets']))
            if widen_from(diags):
                continue
            if nightly:
                fuzz = list(cargo_json(['+nightly', 'check', '--manifest-path',
                                        'fuzz/Cargo.toml', '--bins', '--target-dir',
                                        'target/fuzz-check']))
                if widen_from(fuzz):
                    continue
                diags += fuzz
            errors = [d['rendered'] for d in diags if d['level'] == 'error']
            if errors:
                sys.exit('narrow-pub: errors it cannot settle:\n' + ''.join(errors[:5]))
            break
    subprocess.run(['cargo', 'fmt'], check=True)


main()
