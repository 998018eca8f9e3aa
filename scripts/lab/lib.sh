# shellcheck shell=bash
# Shell helpers shared by scripts/demo.sh and scripts/bench-heal.sh (sourced; needs $DIR, the lab
# directory).

cmdline_of() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" || true; }

# lab_qemu_pids [SUBDIR]: the live qemu processes whose command line names DIR/ (or DIR/SUBDIR/).
lab_qemu_pids() {
  local want=$DIR/${1:+$1/} p comm stat
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    comm=""
    read -r comm 2>/dev/null <"/proc/$p/comm" || continue
    [[ $comm == qemu-system* ]] || continue
    stat=""
    read -r stat 2>/dev/null <"/proc/$p/stat" || continue
    stat=${stat##*) }
    [[ ${stat:0:1} != Z && ${stat:0:1} != X ]] || continue
    [[ " $(cmdline_of "$p")" == *"$want"* ]] && echo "$p"
  done
  return 0
}
