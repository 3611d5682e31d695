# Builds feedload, Herald's load generator, into a small image, for running
# it inside the compose cluster's network (compose.cluster.yml, service
# feedload). The build context is the repository root.
FROM golang:1.26 AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -o /out/ ./loadtest/cmd/feedload

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/ /usr/local/bin/
WORKDIR /reports
ENTRYPOINT ["/usr/local/bin/feedload"]
CMD ["run", "--help"]
