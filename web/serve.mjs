// Serves the repository root on 127.0.0.1 (the demo at /web/, the embed check at
// /web/embed/) until interrupted. Port: $PORT, default 8080 (0 = any free port).
import { serve } from "../tests/web/server.mjs";

const port = Number(process.env.PORT ?? 8080);
const { url } = await serve(".", port);
console.log(`wgsparse demo: ${url}/web/   (embed check: ${url}/web/embed/; Ctrl-C to stop)`);
