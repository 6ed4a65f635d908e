#!/usr/bin/env bash
# The `deploy` job with `executor: machine` and `docker_layer_caching: true`: the job's machine
# executor takes no parameters from it, so the cache would silently not be there. Say so instead.
echo "berth/deploy: \`docker_layer_caching\` asks for the remote engine's cache, which only the \`docker\` executor has; on \`machine\`, set \`docker_layer_caching: true\` on a machine executor of your own and run the \`install\` and \`deploy\` commands in your job" >&2
exit 2
