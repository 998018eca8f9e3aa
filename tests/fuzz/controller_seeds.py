#!/usr/bin/env python3
# Writes the seed corpus of controller_fuzz (tests/fuzz/corpus/controller_fuzz/): scenarios spelled as
# the choices controller_fuzz.cc draws, encoded as FuzzedDataProvider reads them (integers from the
# end of the input, most significant byte first). Keep in step with Driver::Step and its helpers.
# Usage: tests/fuzz/controller_seeds.py tests/fuzz/corpus/controller_fuzz
import sys
def enc(choices):
    consumed = []
    for v, lo, hi in choices:
        rng = hi - lo
        k = 0
        while k < 8 and (rng >> (8 * k)) > 0: k += 1
        x = v - lo
        consumed += [(x >> (8 * (k - 1 - i))) & 0xff for i in range(k)]
    return bytes(reversed(consumed))
def step(op, fail=3): return [(fail, 0, 15), (op, 0, 10)]  # fail < 3: write fail+1 of the step fails
def hello(h, a, vc=64, mem=65536): return step(0) + [(h,0,6),(a,0,7),(vc,-4,64),(mem,-1,65536),(100,0,100),(10000,0,10000)]
def apply(svc=0, n=6, uds=2, vcpus=1, keep=1, v1=1, fail=3): return step(6, fail) + [(svc,0,1),(n,0,12),(uds,1,3),(vcpus,1,8),(keep,0,255),(v1,0,255)]
def tick(ms): return step(10) + [(ms,0,5000)]
def drain(h): return step(8) + [(h,0,6)]
def hb(h): return step(1) + [(h,0,6)]
def disc(h): return step(5) + [(h,0,6)]
seeds = {
  'write-fails-mid-apply': hello(0,0)+hello(1,1)+apply(n=6, fail=1)+hello(0,0)+hello(1,1)+apply(n=5, fail=0)+tick(1000),
  'three-hosts-apply-tick': hello(0,0)+hello(1,1)+hello(2,2)+apply()+tick(1000)+hb(0)+hb(1)+tick(4000)+tick(4000),
  'apply-drain-reapply': hello(0,0)+hello(1,1)+hello(2,2)+apply(n=9)+drain(1)+apply(n=3,v1=0)+tick(2000),
  'bad-hellos': hello(3,3)+hello(4,0)+hello(5,4)+hello(0,6,vc=-4)+hello(0,7)+hello(1,0)+apply(svc=1,n=12)+disc(1)+tick(5000),
  'host-dies-heal': hello(0,0)+hello(1,1)+apply(n=4)+hb(0)+tick(3000)+hb(0)+tick(3000)+hello(1,1)+tick(500),
}
for name, ch in seeds.items():
    open(f'{sys.argv[1]}/{name}.bin', 'wb').write(enc(ch))
