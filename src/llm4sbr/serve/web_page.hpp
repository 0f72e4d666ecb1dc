// The page `GET /` answers: a person's way to try the service without curl. One self-contained HTML document
// (inline CSS and JS, nothing loaded from elsewhere) that talks only to this server's JSON routes.
#pragma once

#include <string_view>

namespace llm4sbr::serve {

/// The HTML page of `GET /` (serve it as text/html; charset=utf-8). Its search box queries GET /v1/items as
/// the user types; a clicked result is appended to the session, and every change of the session posts it to
/// POST /v1/recommend (k = 20, explain) and shows the recommended items with their scores, the flags, the
/// intent source, and per view its intent text, gate and localized items. All data goes into the DOM as text
/// (textContent), never as HTML. A Content-Security-Policy meta tag keeps the page to its own origin. The
/// text has static storage.
std::string_view web_page();

}  // namespace llm4sbr::serve
