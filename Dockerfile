# A hearsay agent image with nothing in it but the static binary: no base
# image to pull. Build with `make docker` (it builds the binary first).
FROM scratch
COPY bin/hearsay-linux-amd64 /hearsay
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
# client authentication yet, so publish 7947 only where it should be
# reachable (compose.yaml: host loopback). Add --join and friends after the
# image name.
CMD ["--data-dir", "/data", "--bind", "0.0.0.0:7946", "--http", "0.0.0.0:7947", "--secret-key-file", "/keys/gossip.key", "--insecure"]
