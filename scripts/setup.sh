#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian/Ubuntu machine with Python >= 3.11.
#
#   bash scripts/setup.sh          # normally called by scripts/demo.sh / scripts/test.sh
#
# What it does, each step skipped when already done:
#   1. apt packages that are missing (open3d's libusb, a C/C++ toolchain and
#      cmake for the interface package, Java for METEOR, python3-venv);
#   2. a virtual environment in .venv with the pinned requirements
#      (torch 2.13.0 CPU build unless VIDEO3D_TORCH_INDEX names a CUDA index);
#   3. the ROS 2 interface package msg/ (video3d_interfaces) built with colcon
#      against the ROS 2 Python wheels, into .build/ros;
#   4. .build/env.sh, which the entry points source.
#
# Environment switches:
#   VIDEO3D_TORCH_INDEX  e.g. https://download.pytorch.org/whl/cu128 on a CUDA machine
#   VIDEO3D_VENV         where the virtual environment lives (default: .venv)
#   PYTHON               the interpreter to build the venv from (default: python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VIDEO3D_VENV:-$ROOT/.venv}"
BUILD="$ROOT/.build"
PYTHON="${PYTHON:-python3}"
TORCH_INDEX="${VIDEO3D_TORCH_INDEX:-}"

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@";
    elif command -v sudo >/dev/null 2>&1; then sudo "$@";
    else die "need root for: $* (run it yourself, then re-run this script)"; fi
}
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# --- 0. interpreter ---------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' on PATH; install Python >= 3.11"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$("$PYTHON" --version 2>&1) is too old; video3d needs Python >= 3.11"

# --- 1. system packages -----------------------------------------------------
need_apt=()
# grep reads all of ldconfig's output: with -q it would quit early and SIGPIPE would fail the pipe
have_lib() { ldconfig -p 2>/dev/null | grep -F "$1" >/dev/null; }
have_lib 'libusb-1.0.so.0' || need_apt+=(libusb-1.0-0)
have_lib 'libgomp.so.1' || need_apt+=(libgomp1)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
"$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 \
        || die "missing system packages (${need_apt[*]}) and no apt-get; install them by hand"
    say "installing system packages: ${need_apt[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# --- 2. virtual environment -------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
req_hash="$(hash_of "$ROOT"/requirements/*.txt "$ROOT/ros2_ws/src/video3d_ros/setup.py" \
    "$ROOT/training/pyproject.toml"; echo "$TORCH_INDEX")"
stamp="$VENV/.video3d-requirements"
if [ "$(cat "$stamp" 2>/dev/null)" != "$req_hash" ]; then
    pip_q=(-q --disable-pip-version-check)
    say "installing torch (pinned; ${TORCH_INDEX:-CPU build})"
    if [ -n "$TORCH_INDEX" ]; then
        "$PY" -m pip install "${pip_q[@]}" -r "$ROOT/requirements/torch.txt" --index-url "$TORCH_INDEX" \
            --extra-index-url https://pypi.org/simple
    else
        "$PY" -m pip install "${pip_q[@]}" -r "$ROOT/requirements/torch.txt"
    fi
    say "installing pinned requirements (runtime, ROS 2 wheels, tests)"
    "$PY" -m pip install "${pip_q[@]}" -c "$ROOT/requirements/constraints.txt" -c "$ROOT/requirements/torch.txt" \
        -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/ros.txt" -r "$ROOT/requirements/test.txt"
    say "installing video3d_ros and video3d_train (editable)"
    "$PY" -m pip install "${pip_q[@]}" --no-deps --no-build-isolation \
        -e "$ROOT/ros2_ws/src/video3d_ros" -e "$ROOT/training"
    echo "$req_hash" > "$stamp"
fi

# --- 3. interface package (msg/) --------------------------------------------
# The ROS 2 wheels' CMake exports name two include directories of the machine
# that built them; they must exist for CMake's generate step. Point them at
# this interpreter's headers and numpy's, only where missing.
read -r py_inc np_inc < <("$PY" -c 'import sysconfig, numpy; print(sysconfig.get_paths()["include"], numpy.get_include())')
for pair in "/opt/python/cp311-cp311/include/python3.11=$py_inc" \
            "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include=$np_inc"; do
    link="${pair%%=*}"; target="${pair#*=}"
    if [ ! -e "$link" ]; then
        say "linking $link -> $target (include path baked into the ROS 2 wheels)"
        as_root mkdir -p "$(dirname "$link")"
        as_root ln -s "$target" "$link"
    fi
done
msg_hash="$(hash_of $(find "$ROOT/msg" -type f | sort) "$ROOT/requirements/ros.txt")"
msg_stamp="$BUILD/ros/.video3d-msg"
if [ "$(cat "$msg_stamp" 2>/dev/null)" != "$msg_hash" ] || [ ! -f "$BUILD/ros/install/setup.sh" ]; then
    say "building the interface package msg/ with colcon"
    mkdir -p "$BUILD/ros"
    (
        cd "$BUILD/ros"
        export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
        export CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV"
        "$VENV/bin/colcon" --log-base log build --base-paths "$ROOT/msg" \
            --build-base build --install-base install \
            --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF \
            > colcon.out 2>&1 || { tail -n 40 colcon.out >&2; die "colcon build of msg/ failed (full log: $BUILD/ros/colcon.out)"; }
    )
    echo "$msg_hash" > "$msg_stamp"
fi

# --- 4. environment file ----------------------------------------------------
cat > "$BUILD/env.sh" <<EOF
# Generated by scripts/setup.sh; source it to use video3d from this checkout.
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:\$PATH"
export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
_v3d_u=\$-; set +u
. "$BUILD/ros/install/setup.sh"
case \$_v3d_u in *u*) set -u;; esac; unset _v3d_u
# Keep ROS traffic on this machine; callers pick their own ROS_DOMAIN_ID.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
EOF
say "ready ($VENV)"
