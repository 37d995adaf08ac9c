#!/usr/bin/python3
"""Test client for the headless session (GTK3, Wayland backend).

Fullscreen window:
  * top 200 px: a known pattern: 4 solid colour bands (R, G, B, white) each 320 px wide
  * a Gtk.Entry (focused) -> prints  TEXT:<repr(text)>  on every change
  * the rest: an event area -> prints  CLICK:<button>:<x>:<y>  (window == screen coords,
    the window is fullscreen at 0,0)
Also prints READY:<w>x<h> once mapped.  Output is line-buffered to stdout.
"""
import sys
import gi
gi.require_version("Gtk", "3.0")
from gi.repository import Gtk, GLib  # noqa: E402

PATTERN = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)]


def out(s):
    print(s, flush=True)


ANIM = "--animate" in sys.argv
pos = [0]


def draw_pattern(widget, cr):
    for i, (r, g, b) in enumerate(PATTERN):
        cr.set_source_rgb(r, g, b)
        cr.rectangle(i * 320, 0, 320, 200)
        cr.fill()
    if ANIM:  # a black 100x100 square moving 8 px per tick over the bands
        cr.set_source_rgb(0, 0, 0)
        cr.rectangle(pos[0] % 1180, 50, 100, 100)
        cr.fill()
    return False


def tick():
    pos[0] += 8
    area.queue_draw_area(0, 0, 1280, 200)
    return True


win = Gtk.Window(title="proto-testapp")
box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL)
area = Gtk.DrawingArea()
area.set_size_request(1280, 200)
area.connect("draw", draw_pattern)
entry = Gtk.Entry()
entry.connect("changed", lambda e: out("TEXT:" + repr(e.get_text())))
clicks = Gtk.EventBox()
clicks.set_vexpand(True)


def on_click(w, ev):
    # translate to window coordinates
    x, y = w.translate_coordinates(win, int(ev.x), int(ev.y))
    out(f"CLICK:{ev.button}:{x}:{y}")
    return True


clicks.connect("button-press-event", on_click)
box.pack_start(area, False, False, 0)
box.pack_start(entry, False, False, 0)
box.pack_start(clicks, True, True, 0)
win.add(box)
win.connect("destroy", Gtk.main_quit)


def on_map(*_):
    entry.grab_focus()
    GLib.timeout_add(300, lambda: (out(f"READY:{win.get_allocated_width()}x{win.get_allocated_height()}"), False)[1])


win.connect("map-event", on_map)
if ANIM:
    GLib.timeout_add(33, tick)  # ~30 fps
win.fullscreen()
win.show_all()
Gtk.main()
