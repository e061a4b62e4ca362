#!/usr/bin/env python3
"""Where a sequential decoupled one-activity workflow's time goes, hop by hop.

Reads the files a traced run wrote (KILN_HOP_TRACE=<prefix>: common/hop_trace.h) and prints,
for each step of the workflow's path from the caller's start to its result, the median and
quartile times between consecutive points. Run:

  KILN_HOP_TRACE=/tmp/hop kiln-engine-bench --topology decoupled --only a --duration 0.2 \
      --sequential 500
  bench/engine/hops.py /tmp/hop

Only the sequential part is read (one workflow at a time, so the points of one workflow lie
between its caller's c.start and c.done); a workflow whose points do not all appear in order
is left out and counted.
"""
import collections
import glob
import statistics
import sys

# The path of scenario (a): (process, point), in the order a workflow passes them.
ROUND_TRIP = [('O', 'o.commit.w'), ('O', 'o.commit.synced')]
PATH = ([('C', 'c.start'), ('O', 'o.start.rpc')] + ROUND_TRIP + [('O', 'o.write')] +
        [('WF', 'w.read'), ('WF', 'w.wft'), ('WF', 'w.write'), ('O', 'o.read'), ('O', 'o.exec')] +
        ROUND_TRIP + [('O', 'o.write')] +
        [('ACT', 'w.read'), ('ACT', 'w.act'), ('ACT', 'w.write'), ('O', 'o.read'), ('O', 'o.exec')] +
        ROUND_TRIP + [('O', 'o.write')] +
        [('WF', 'w.read'), ('WF', 'w.wft'), ('WF', 'w.write'), ('O', 'o.read'), ('O', 'o.exec')] +
        ROUND_TRIP + [('O', 'o.closed'), ('C', 'c.done')])


def role(tags):
    if 'c.start' in tags:
        return 'C'
    if any(t.startswith('o.') for t in tags):
        return 'O'
    if 'w.wft' in tags:
        return 'WF'
    if 'w.act' in tags:
        return 'ACT'
    return '?'


def main(prefix):
    events = []
    for path in glob.glob(prefix + '.*'):
        with open(path) as f:
            lines = [line.split() for line in f if line.count(' ') == 2]
        r = role({tag for _, _, tag in lines})
        events += [(int(ns), r, tag) for ns, _, tag in lines]
    events.sort()
    workflows, current = [], None
    for event in events:
        if event[2] == 'c.start':
            current = [event]
            workflows.append(current)
        elif current is not None:
            current.append(event)
            if event[2] == 'c.done':
                current = None
    steps = collections.defaultdict(list)
    totals, matched = [], 0
    for w in workflows:
        times, i = [], 0
        for point in PATH:
            while i < len(w) and (w[i][1], w[i][2]) != point:
                i += 1
            if i == len(w):
                break
            times.append(w[i][0])
            i += 1
        if len(times) != len(PATH):
            continue
        matched += 1
        totals.append((times[-1] - times[0]) / 1000)
        for k in range(1, len(PATH)):
            steps[k].append((times[k] - times[k - 1]) / 1000)
    if not matched:
        sys.exit('no workflow had every point: was the run traced, decoupled, scenario (a)?')
    print(f'{matched} of {len(workflows)} workflows had every point; '
          f'caller start to result: median {statistics.median(totals):.0f} us\n')
    print('| from | to | median us | quartiles us |')
    print('| --- | --- | --- | --- |')
    for k in range(1, len(PATH)):
        d = sorted(steps[k])
        a, b = PATH[k - 1], PATH[k]
        print(f'| {a[0]} {a[1]} | {b[0]} {b[1]} | {statistics.median(d):.0f} | '
              f'{d[len(d) // 4]:.0f}–{d[3 * len(d) // 4]:.0f} |')


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: hops.py <KILN_HOP_TRACE prefix>')
    main(sys.argv[1])
