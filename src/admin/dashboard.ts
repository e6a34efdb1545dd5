/**
 * The admin dashboard (GET /): one self-contained page, no external resources. Placeholder until
 * the dashboard lands.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>meshlet</title></head>
<body><h1>meshlet</h1><p>See <a href="/stats">/stats</a>, <a href="/clusters">/clusters</a>, <a href="/metrics">/metrics</a>.</p></body></html>
`;
