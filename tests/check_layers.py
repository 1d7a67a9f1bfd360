#!/usr/bin/python3
"""check_layers.py - calls go downward: check the #include lines.

Reads tests/layers.conf (the layer of each module) and every .c and .h
under common/ shm/ worker/ sql/ master/.  Fails, naming the file and the
line, when a file includes a header of a module at a higher layer, of a
folder it may never see, or of a module missing from layers.conf; and
when modules include each other around a circle.
"""
import os
import re
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRS = ("common", "shm", "worker", "sql", "master")
INC = re.compile(r'^\s*#\s*include\s+"([^"]+)\.h"')


def load(path):
    layers, forbid = {}, set()
    with open(path) as f:
        for n, line in enumerate(f, 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if words[0] == "forbid" and len(words) == 3:
                forbid.add((words[1], words[2]))
            elif len(words) >= 2 and words[1].isdigit():
                layers[words[0]] = int(words[1])
            else:
                sys.exit("%s:%d: cannot read this line" % (path, n))
    return layers, forbid


def main():
    conf = os.path.join(TOP, "tests", "layers.conf")
    layers, forbid = load(conf)
    errors, edges = [], {}
    for d in DIRS:
        for name in sorted(os.listdir(os.path.join(TOP, d))):
            if not name.endswith((".c", ".h")):
                continue
            mod = d + "/" + name[:-2]
            rel = mod + name[-2:]
            if mod not in layers:
                errors.append("%s: module %s is not in tests/layers.conf"
                              % (rel, mod))
                continue
            with open(os.path.join(TOP, rel)) as f:
                for n, line in enumerate(f, 1):
                    m = INC.match(line)
                    if m is None or m.group(1) == mod:
                        continue
                    dep = m.group(1)
                    where = "%s:%d" % (rel, n)
                    if dep not in layers:
                        errors.append("%s: includes %s.h, which is not in "
                                      "tests/layers.conf" % (where, dep))
                        continue
                    if (d, dep.split("/")[0]) in forbid:
                        errors.append("%s: %s/ may not include %s.h"
                                      % (where, d, dep))
                    if layers[dep] > layers[mod]:
                        errors.append("%s: %s (layer %d) includes %s.h "
                                      "(layer %d), above it"
                                      % (where, mod, layers[mod], dep,
                                         layers[dep]))
                    edges.setdefault(mod, set()).add(dep)
    # a circle of includes, however long, among modules of one layer
    state = {}

    def visit(m, path):
        state[m] = 1
        for dep in sorted(edges.get(m, ())):
            if state.get(dep) == 1:
                circle = path[path.index(dep):] + [dep]
                errors.append("include circle: " + " -> ".join(circle))
            elif dep not in state:
                visit(dep, path + [dep])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    for e in errors:
        print(e)
    if errors:
        return 1
    print("layers: %d modules, %d include edges, all downward, no circle"
          % (len(layers), sum(len(v) for v in edges.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
