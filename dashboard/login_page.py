"""The login and logout pages in LabLink's look (Panel's login template option): the same
header, colours and type as the dashboard, and nothing fetched from another site (inline
styles and an inline SVG icon; the system's fonts).

The templates render with the variables Panel's handlers pass (``login_endpoint``,
``errormessage``; ``LOGIN_ENDPOINT`` on the logout page), autoescaped.
"""

from __future__ import annotations

import jinja2

from dashboard.layout import FAVICON, LOGO
from dashboard.look import FONT, HEADER, PRIMARY, TONES

_STYLE = f"""
* {{ box-sizing: border-box; }}
body {{ margin: 0; font-family: {FONT}; background: #f5f7fa; color: #212529; }}
header {{ background: {HEADER}; color: #fff; display: flex; align-items: center;
  gap: 12px; padding: 12px 20px; }}
header a {{ color: #fff; text-decoration: none; font-size: 1.5rem; font-weight: 600;
  display: flex; align-items: center; gap: 12px; }}
header img {{ width: 36px; height: 36px; }}
main {{ display: flex; justify-content: center; padding: 48px 16px; }}
.card {{ background: #fff; border: 1px solid #dee2e6; border-radius: 10px; padding: 28px;
  width: 100%; max-width: 400px; box-shadow: 0 2px 8px rgba(0,0,0,.06); }}
h1 {{ font-size: 1.4rem; margin: 0 0 4px; }}
p.lead {{ color: #495057; margin: 0 0 20px; }}
label {{ display: block; font-weight: 600; margin: 12px 0 4px; }}
input {{ width: 100%; padding: 9px 10px; font: inherit; border: 1px solid #adb5bd;
  border-radius: 6px; }}
input:focus {{ outline: 3px solid #9ec5fe; border-color: {PRIMARY}; }}
button, .button {{ display: block; width: 100%; margin-top: 20px; padding: 10px; font: inherit;
  font-weight: 600; color: #fff; background: {PRIMARY}; border: 0; border-radius: 6px;
  cursor: pointer; text-align: center; text-decoration: none; }}
button:hover, .button:hover {{ background: #084a8c; }}
.alert {{ color: {TONES["trouble"].text}; background: {TONES["trouble"].background};
  border: 1px solid {TONES["trouble"].border}; border-radius: 6px; padding: 8px 12px;
  margin-bottom: 8px; }}
.note {{ color: #495057; font-size: 0.9rem; margin-top: 20px; }}
.note a {{ color: {PRIMARY}; }}
"""

_HEAD = f"""<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="{FAVICON}">
<style>{_STYLE}</style>"""

_HEADER = f"""<header><a href="/"><img src="{LOGO}" alt="">LabLink</a></header>"""

LOGIN_HTML = f"""<!DOCTYPE html>
<html lang="en">
<head>{_HEAD}<title>LabLink: admin sign-in</title></head>
<body>
{_HEADER}
<main>
  <form class="card" action=".{{{{ login_endpoint }}}}" method="post">
    <h1>Admin sign-in</h1>
    <p class="lead">Sign in to launch VMs, watch the fleet and manage access.</p>
    {{% if errormessage %}}
    <div id="error-message" class="alert" role="alert">{{{{ errormessage }}}}</div>
    {{% endif %}}
    <label for="username">Username</label>
    <input id="username" name="username" type="text" autocapitalize="off" autocorrect="off"
           autocomplete="username" autofocus required>
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password"
           required>
    <button type="submit">Log in</button>
    <p class="note">Here for a GPU machine? <a href="/">Request a VM</a>; no sign-in needed.</p>
  </form>
</main>
</body>
</html>
"""

LOGOUT_HTML = f"""<!DOCTYPE html>
<html lang="en">
<head>{_HEAD}<title>LabLink: signed out</title></head>
<body>
{_HEADER}
<main>
  <div class="card">
    <h1>Signed out</h1>
    <p class="lead">You are logged out of the LabLink admin pages.</p>
    <a class="button" href=".{{{{ LOGIN_ENDPOINT }}}}">Log in again</a>
  </div>
</main>
</body>
</html>
"""

_ENV = jinja2.Environment(autoescape=True)
LOGIN_TEMPLATE = _ENV.from_string(LOGIN_HTML)
LOGOUT_TEMPLATE = _ENV.from_string(LOGOUT_HTML)
