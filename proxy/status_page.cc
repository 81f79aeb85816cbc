#include "proxy/status_page.h"

#include <cstdio>

#include "proxy/worker_context.h"

namespace portico {
namespace {

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      default:
        if (c < 0x20 || c >= 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out.append(buf);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

void append_number(std::string& out, const char* key, uint64_t value) {
  append_json_string(out, key);
  out.push_back(':');
  out.append(std::to_string(value));
}

}  // namespace

StatusSnapshot make_status_snapshot(const WorkerContext& ctx, const Metrics& totals,
                                    double uptime_seconds) {
  StatusSnapshot s;
  s.version = PORTICO_VERSION;
  s.uptime_seconds = uptime_seconds;
  const Metrics& m = totals;
  s.open_connections = m.open_connections;
  s.open_tunnels = m.open_tunnels;
  s.tls_handshakes = m.tls_handshakes;
  for (const auto& [reason, count] : m.tls_handshake_failures) s.tls_handshake_failures += count;
  for (const auto& [key, count] : m.backend_errors) s.backend_errors += count;
  for (uint64_t n : m.answered_by_class) s.requests += n;
  s.client_errors = m.answered_by_class[3];
  s.server_errors = m.answered_by_class[4];
  if (!ctx.routing) return s;
  auto now = BackendSelector::Clock::now();
  const auto& routes = ctx.routing->table->routes();
  for (size_t i = 0; i < routes.size(); ++i) {
    const Route& route = routes[i];
    StatusRoute r;
    r.pattern = route_label(route);
    const BackendSelector& selector = ctx.routing->selectors[i];
    for (size_t b = 0; b < route.backends.size(); ++b) {
      r.backends.push_back({route.backends[b].scheme + "://" + route.backends[b].authority(),
                            selector.is_down(b, now), selector.active(b)});
    }
    if (auto it = m.routes.find(r.pattern); it != m.routes.end()) {
      for (uint64_t n : it->second.by_class) r.requests += n;
      r.server_errors = it->second.by_class[4];
    }
    s.routes.push_back(std::move(r));
  }
  return s;
}

std::string render_status_json(const StatusSnapshot& s) {
  std::string out = "{";
  append_json_string(out, "version");
  out.push_back(':');
  append_json_string(out, s.version);
  out.append(",\"uptime_seconds\":")
      .append(std::to_string(static_cast<uint64_t>(s.uptime_seconds)));
  out.append(",\"open_connections\":").append(std::to_string(s.open_connections));
  out.append(",\"open_tunnels\":").append(std::to_string(s.open_tunnels));
  out.push_back(',');
  append_number(out, "requests", s.requests);
  out.push_back(',');
  append_number(out, "client_errors", s.client_errors);
  out.push_back(',');
  append_number(out, "server_errors", s.server_errors);
  out.push_back(',');
  append_number(out, "tls_handshakes", s.tls_handshakes);
  out.push_back(',');
  append_number(out, "tls_handshake_failures", s.tls_handshake_failures);
  out.push_back(',');
  append_number(out, "backend_errors", s.backend_errors);
  out.append(",\"routes\":[");
  for (size_t i = 0; i < s.routes.size(); ++i) {
    const StatusRoute& r = s.routes[i];
    if (i > 0) out.push_back(',');
    out.append("{\"pattern\":");
    append_json_string(out, r.pattern);
    out.push_back(',');
    append_number(out, "requests", r.requests);
    out.push_back(',');
    append_number(out, "server_errors", r.server_errors);
    out.append(",\"backends\":[");
    for (size_t b = 0; b < r.backends.size(); ++b) {
      if (b > 0) out.push_back(',');
      out.append("{\"address\":");
      append_json_string(out, r.backends[b].address);
      out.append(",\"state\":");
      append_json_string(out, r.backends[b].down ? "down" : "up");
      out.append(",\"active\":").append(std::to_string(r.backends[b].active)).append("}");
    }
    out.append("]}");
  }
  out.append("]}");
  return out;
}

const std::string& status_page_html() {
  // One page, inline style and script only: the admin port may be the one thing reachable on a
  // box with no network, and it must not pull anything from elsewhere.
  static const std::string page = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>portico status</title>
<style>
  body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.25rem; margin: 0 0 .8rem; }
  .cards { display: flex; flex-wrap: wrap; gap: .6rem; margin-bottom: 1rem; }
  .card { border: 1px solid #ddd; border-radius: 6px; padding: .5rem .8rem; min-width: 9rem; }
  .card b { display: block; font-size: 1.3rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #eee; vertical-align: top; }
  .up { color: #176f2c; font-weight: 600; } .down { color: #b3261e; font-weight: 600; }
  #updated { color: #777; font-size: .85rem; }
</style>
</head>
<body>
<h1>portico <span id="version"></span></h1>
<div class="cards">
  <div class="card">open connections<b id="open_connections">–</b></div>
  <div class="card">open tunnels<b id="open_tunnels">–</b></div>
  <div class="card">requests/s<b id="rate">–</b></div>
  <div class="card">requests<b id="requests">–</b></div>
  <div class="card">5xx<b id="server_errors">–</b></div>
  <div class="card">4xx<b id="client_errors">–</b></div>
  <div class="card">backend errors<b id="backend_errors">–</b></div>
  <div class="card">TLS failures<b id="tls_handshake_failures">–</b></div>
</div>
<table>
  <thead><tr><th>route</th><th>backends</th><th>requests</th><th>5xx</th></tr></thead>
  <tbody id="routes"></tbody>
</table>
<p id="updated"></p>
<script>
let last = null;
function text(id, value) { document.getElementById(id).textContent = value; }
function render(s) {
  text('version', s.version);
  for (const k of ['open_connections', 'open_tunnels', 'requests', 'server_errors',
                   'client_errors', 'backend_errors', 'tls_handshake_failures']) text(k, s[k]);
  const now = Date.now();
  if (last) text('rate', ((s.requests - last.requests) * 1000 / (now - last.at)).toFixed(1));
  last = { requests: s.requests, at: now };
  const body = document.getElementById('routes');
  body.replaceChildren();
  for (const r of s.routes) {
    const tr = document.createElement('tr');
    const cells = [r.pattern, null, String(r.requests), String(r.server_errors)];
    cells.forEach((value, i) => {
      const td = document.createElement('td');
      if (i === 1) {
        for (const b of r.backends) {
          const div = document.createElement('div');
          const state = document.createElement('span');
          state.className = b.state;
          state.textContent = b.state;
          div.append(b.address + ' ', state, ' (' + b.active + ' active)');
          td.append(div);
        }
      } else {
        td.textContent = value;
      }
      tr.append(td);
    });
    body.append(tr);
  }
  text('updated', 'updated ' + new Date().toLocaleTimeString() + ', up ' + s.uptime_seconds + ' s');
}
async function refresh() {
  try {
    const response = await fetch('status.json', { cache: 'no-store' });
    render(await response.json());
  } catch (e) {
    text('updated', 'cannot reach portico: ' + e);
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
)HTML";
  return page;
}

}  // namespace portico
