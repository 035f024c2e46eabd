"""Images and their files on disk, under the state root (ROOT, `--root`).

- digest, content: sha256 digests; the verified blob store (`images/blobs/sha256/`).
- reference: Docker image references and their normalization.
- layout: `images/index.json` and `images/refs.json`, edited under one flock.
- images: `Image`, `ImageStore` (add, resolve, list, tag, untag, delete, layer_dirs).
- tar_members, layers: vetting and safe unpacking of layer tars into `layers/<diff-id hex>/`.
- bootstrap: `busybox:latest` built offline from the host's busybox-static.
- snapshots: a container's upper/work/merged dirs and the overlay mount options.
"""
