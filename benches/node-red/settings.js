// Node-RED settings for the load benchmark's peer scenario: benches/load/peer.rs copies this
// file and flow.json into a temporary user directory and starts Node-RED there with
// `--port <free port> --userDir <dir> --settings <dir>/settings.js`.
module.exports = {
    flowFile: "flow.json",
    credentialSecret: false,
    // The file node's relative `events.jsonl` is resolved here.
    fileWorkingDirectory: __dirname,
    // No editor and no admin API: a production flow can run without them, and their
    // routes would sit in front of every request.
    httpAdminRoot: false,
    httpNodeRoot: "/",
    uiHost: "127.0.0.1",
    logging: { console: { level: "warn", metrics: false, audit: false } },
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false, updateNotification: false },
    functionExternalModules: false,
    exportGlobalContextKeys: false,
};
