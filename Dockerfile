# A hearsay agent image with nothing in it but the static binary: no base
# image to pull. Build with `make docker` (it builds the binary first).
FROM scratch
COPY bin/hearsay-linux-amd64 /hearsay
EXPOSE 7946/tcp 7946/udp 7947/tcp
VOLUME /data
ENTRYPOINT ["/hearsay", "agent"]
# The HTTP API has no authentication: publish 7947 only where it should be
# reachable. Add --join, --secret-key-file and friends after the image name.
CMD ["--data-dir", "/data", "--bind", "0.0.0.0:7946", "--http", "0.0.0.0:7947"]
