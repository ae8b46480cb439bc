#!/usr/bin/env bash
# shellcheck shell=bash
# Container image archives without a container engine, and their push to a registry (sourced by
# scripts/testbed-images and scripts/skyform-image; run by scripts/testbed: see the end).

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


# image_reference REF: "REGISTRY REPOSITORY TAG" of an image reference, as docker and containerd read one:
# the first part names a registry only with a dot, a port or `localhost` (else docker.io), and a
# one-part name on docker.io is under library/ (nginx:1.27 -> docker.io library/nginx 1.27).
image_reference() {
    local ref=$1
    [[ "$ref" =~ ^(.+):([^:/]+)$ ]] || die "not an image reference with a tag: '$ref'"
    local name=${BASH_REMATCH[1]} tag=${BASH_REMATCH[2]} first rest
    first=${name%%/*} rest=${name#*/}
    if [[ "$name" == */* && ( "$first" == *.* || "$first" == *:* || "$first" == localhost ) ]]; then
        echo "$first $rest $tag"
    elif [[ "$name" == */* ]]; then
        echo "docker.io $name $tag"
    else
        echo "docker.io library/$name $tag"
    fi
}

# archive_tags ARCHIVE: the references a docker archive is tagged with (its manifest.json's RepoTags).
archive_tags() {
    tar -xOf "$1" manifest.json | sed -n 's/.*"RepoTags":\[\([^]]*\)\].*/\1/p' | awk -v RS=, '{gsub(/["\n]/, ""); if (length) print}'
}

# push_docker_archive [--plain-http] ARCHIVE REGISTRY/REPOSITORY:TAG: pushes a docker archive (as
# docker_archive writes it: uncompressed layers, each one's digest the diff ID its config records) with
# the registry HTTP API (OCI distribution, anonymous): the config and each layer the repository lacks
# (layers streamed out of the archive), then an OCI image manifest under TAG. Nothing is sent when TAG
# already names that very manifest (same digest), so pushing again is cheap. --plain-http: HTTP rather
# than HTTPS (a local registry). A subshell: its scratch directory goes with it, whatever happens.
push_docker_archive() (
    set -euo pipefail
    local scheme=https
    [[ "${1:-}" == --plain-http ]] && { scheme=http; shift; }
    local archive=${1:?push_docker_archive: ARCHIVE} ref=${2:?push_docker_archive: REGISTRY/REPOSITORY:TAG}
    [[ "$ref" =~ ^([^/]+)/(.+):([^:/]+)$ ]] || die "push: wants REGISTRY/REPOSITORY:TAG, got '$ref'"
    local registry=${BASH_REMATCH[1]} repository=${BASH_REMATCH[2]} tag=${BASH_REMATCH[3]}
    # As docker reads a reference: the first part is a registry only with a dot, a port or `localhost`.
    [[ "$registry" == *.* || "$registry" == *:* || "$registry" == localhost ]] ||
        die "push $ref: '$registry' is not a registry host; name it (docker.io/$ref, ghcr.io/..., HOST:PORT/...)"
    local base="$scheme://$registry/v2/$repository"
    local oci_manifest=application/vnd.oci.image.manifest.v1+json
    local work
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT

    # curl_ok ARGS...: curl that fails with the registry's answer on an HTTP error.
    curl_ok() {
        local status
        status="$(curl -sS -o "$work/answer" -w '%{http_code}' "$@")" || die "cannot reach $registry"
        [[ "$status" =~ ^2 ]] || die "$registry answered $status to ${*: -1}: $(head -c 300 "$work/answer")"
    }

    # The archive's config and layers: names, digests, sizes.
    tar -C "$work" -xf "$archive" manifest.json
    local config_name layer_names=() diff_ids=()
    config_name="$(sed -n 's/.*"Config":"\([^"]*\)".*/\1/p' "$work/manifest.json")"
    [[ -n "$config_name" ]] || die "$archive: no Config in its manifest.json"
    mapfile -t layer_names < <(sed -n 's/.*"Layers":\[\([^]]*\)\].*/\1/p' "$work/manifest.json" | tr ',' '\n' | tr -d '"')
    tar -C "$work" -xf "$archive" "$config_name"
    mapfile -t diff_ids < <(sed -n 's/.*"diff_ids":\[\([^]]*\)\].*/\1/p' "$work/$config_name" | tr ',' '\n' | tr -d '"')
    ((${#layer_names[@]} > 0 && ${#layer_names[@]} == ${#diff_ids[@]})) ||
        die "$archive: ${#layer_names[@]} layers but ${#diff_ids[@]} diff IDs in its config"
    local config_digest config_size layers="" i size
    config_digest="sha256:$(sha256sum "$work/$config_name" | cut -d' ' -f1)"
    config_size="$(stat -c %s "$work/$config_name")"
    local sizes=()
    for i in "${!layer_names[@]}"; do
        # The size from the archive's listing (tar seeks past the data: instant).
        size="$(tar -tvf "$archive" "${layer_names[$i]}" | awk '{print $3}')"
        [[ "$size" =~ ^[0-9]+$ ]] || die "$archive: cannot size ${layer_names[$i]}"
        sizes+=("$size")
        layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"${diff_ids[$i]}\",\"size\":$size}"
    done
    printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
        "$oci_manifest" "$config_digest" "$config_size" "$layers" >"$work/oci-manifest.json"
    local digest existing
    digest="sha256:$(sha256sum "$work/oci-manifest.json" | cut -d' ' -f1)"
    existing="$(curl -sS -f -I -H "Accept: $oci_manifest" "$base/manifests/$tag" 2>/dev/null |
        tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p')" || true
    if [[ "$existing" == "$digest" ]]; then
        log "$ref already there ($digest)"
        return 0
    fi

    # upload DIGEST CMD...: a blob the repository lacks, from CMD's output: POST an upload, then PUT its
    # content (chunked: it is streamed) with the digest, which the registry checks.
    upload() {
        local blob_digest=$1 location; shift
        if curl -sS -f -o /dev/null -I "$base/blobs/$blob_digest" 2>/dev/null; then
            return
        fi
        curl_ok -D "$work/headers" -X POST -H 'Content-Length: 0' "$base/blobs/uploads/"
        location="$(tr -d '\r' <"$work/headers" | sed -n 's/^[Ll]ocation: *//p' | tail -n1)"
        [[ -n "$location" ]] || die "$registry gave no upload location"
        [[ "$location" == http* ]] || location="$scheme://$registry$location"
        [[ "$location" == *\?* ]] && location="$location&digest=$blob_digest" || location="$location?digest=$blob_digest"
        "$@" | curl_ok -X PUT -H 'Content-Type: application/octet-stream' -T - "$location"
    }
    upload "$config_digest" cat "$work/$config_name"
    for i in "${!layer_names[@]}"; do
        upload "${diff_ids[$i]}" tar -xOf "$archive" "${layer_names[$i]}"
    done
    curl_ok -X PUT -H "Content-Type: $oci_manifest" --data-binary "@$work/oci-manifest.json" "$base/manifests/$tag"
    log "pushed $ref ($digest)"
)

# Run as a command (the testbed runs it inside its network namespace):
#   scripts/image-archive.sh push [--plain-http] ARCHIVE REGISTRY/REPOSITORY:TAG
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    log() { printf 'image-archive: %s\n' "$*" >&2; }
    die() { log "ERROR: $*"; exit 1; }
    case "${1:-}" in
    push) shift; push_docker_archive "$@" ;;
    *) sed -n '/^#   scripts\/image-archive.sh push/s/^#   /usage: /p' "$0" >&2; exit 2 ;;
    esac
fi
