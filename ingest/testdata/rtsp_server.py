#!/usr/bin/python3
"""RTSP test server: rtsp://127.0.0.1:PORT/cam  (usage: rtsp_server.py PORT [--test | --file CLIP.mp4])
Default: loops vtest.avi (768x576 @10fps) forever; --test: videotestsrc is-live=true;
--file: streams an H.264 MP4 as it is, in real time, without re-encoding (each
client gets its own playback from the start), so serving many cameras costs the
server almost nothing (the capacity benchmark)."""
import sys, gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer, GLib

Gst.init(None)
port = sys.argv[1] if len(sys.argv) > 1 else "8554"
ENC = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=20 ! rtph264pay name=pay0 pt=96 config-interval=-1"
if "--file" in sys.argv:
    clip = sys.argv[sys.argv.index("--file") + 1]
    launch = f"( filesrc location={clip} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
elif "--test" in sys.argv:
    launch = f"( videotestsrc is-live=true ! video/x-raw,width=768,height=576,framerate=10/1 ! videoconvert ! {ENC} )"
else:
    # producer pipeline decodes the file in real time and loops on EOS (seek to 0);
    # every RTSP client pipeline pulls raw frames from it via intervideosrc.
    src = Gst.parse_launch("filesrc location=/usr/share/doc/opencv-doc/examples/data/vtest.avi ! decodebin "
                           "! videoconvert ! video/x-raw,format=I420 ! intervideosink channel=cam sync=true")
    def on_msg(bus, msg):
        if msg.type == Gst.MessageType.EOS:
            src.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        elif msg.type == Gst.MessageType.ERROR:
            print("producer error:", msg.parse_error(), flush=True)
    bus = src.get_bus(); bus.add_signal_watch(); bus.connect("message", on_msg)
    src.set_state(Gst.State.PLAYING)
    # Fixed caps: before the producer delivers, intervideosrc fills in with
    # black frames, which must have the sample's size too.
    launch = f"( intervideosrc channel=cam ! video/x-raw,width=768,height=576,framerate=10/1 ! videoconvert ! {ENC} )"

server = GstRtspServer.RTSPServer(service=port, address="127.0.0.1")
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(launch)
factory.set_shared("--file" not in sys.argv)
server.get_mount_points().add_factory("/cam", factory)
server.attach(None)
print(f"serving rtsp://127.0.0.1:{port}/cam", flush=True)
GLib.MainLoop().run()
