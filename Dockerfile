# A hearsay agent image with nothing in it but the static binary: no base
# image to pull. Build with `make docker` (it cross-compiles the binary for
# the target architecture first: bin/hearsay-linux-$TARGETARCH, without the
# simulator's plotting code; `make docker GOARCH=arm64`, or PLATFORMS= for
# a multi-arch image with buildx).
FROM scratch
ARG TARGETARCH=amd64
COPY bin/hearsay-linux-${TARGETARCH} /hearsay
# /data and /keys owned by the unprivileged user the agent runs as, so that
# named volumes mounted there start writable by it (no shell here to chown).
COPY --chown=65532:65532 bin/rootfs/ /
# Not root: 65532 is the conventional "nonroot" user of distroless images.
USER 65532:65532
EXPOSE 7946/tcp 7946/udp 7947/tcp
VOLUME /data
ENTRYPOINT ["/hearsay", "agent"]
# No shell in the image: the binary checks itself. Liveness only (the process
# serves its HTTP API); `health --ready` also asks that the node has joined
# and caught up (compose.yaml uses it). Assumes the API on 127.0.0.1:7947 in
# the container, as CMD below sets it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/hearsay", "health", "--addr", "127.0.0.1:7947", "--timeout", "2s"]
# Gossip on 0.0.0.0 needs the cluster key: mount it at /keys/gossip.key
# (`hearsay keys generate --out gossip.key`; compose.yaml makes one), or the
# agent refuses to start and says so. --insecure is for the HTTP API only: to
# be published it must listen on 0.0.0.0 in the container, and it has no
# client authentication without --certs-dir, so publish 7947 only where it
# should be reachable (compose.yaml: host loopback). Arguments after the image
# name replace this CMD: repeat --data-dir /data and the rest with --join and
# friends, as compose.yaml does.
CMD ["--data-dir", "/data", "--bind", "0.0.0.0:7946", "--http", "0.0.0.0:7947", "--secret-key-file", "/keys/gossip.key", "--insecure"]
