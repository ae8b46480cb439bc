# shellcheck shell=bash
# Container image archives without a container engine (sourced by scripts/testbed-images and
# scripts/skyform-image).

# docker_archive OUT REF ROOTFS CONFIG_JSON: writes a one-layer docker-archive of ROOTFS tagged REF.
# CONFIG_JSON is the image's "config" object (Env, Entrypoint, Cmd, User, WorkingDir).
docker_archive() {
    local out=$1 ref=$2 rootfs=$3 config=$4
    local tmp
    tmp="$(mktemp -d "$(dirname "$out")/.archive.XXXXXX")"
    tar --numeric-owner --xattrs -C "$rootfs" -cf "$tmp/layer.tar" .
    local diff
    diff="sha256:$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)"
    printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["%s"]},"history":[{"created_by":"skyform scripts/%s"}]}' \
        "$config" "$diff" "$(basename "$0")" >"$tmp/config.json"
    local cfg
    cfg="$(sha256sum "$tmp/config.json" | cut -d' ' -f1).json"
    mv "$tmp/config.json" "$tmp/$cfg"
    printf '[{"Config":"%s","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$cfg" "$ref" >"$tmp/manifest.json"
    tar -C "$tmp" -cf "$out.tmp" manifest.json "$cfg" layer.tar
    mv "$out.tmp" "$out"
    rm -rf "$tmp"
}

