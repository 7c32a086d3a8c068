#!/usr/bin/python3
"""RTSP test server (GStreamer's gst-rtsp-server): rtsp://127.0.0.1:PORT/cam

usage: rtsp_server.py PORT [--test | --file CLIP.mp4] [--codec h264|h265|mjpeg]
                           [--switch SECONDS] [--tls CERT KEY] [--digest USER PASS]

Default: loops vtest.avi (768x576 @10fps) forever, encoded live with --codec
(default h264); --test: videotestsrc is-live=true instead; --file: streams
an H.264 MP4 as it is, in real time, without re-encoding (each client gets
its own playback from the start), so serving many cameras costs the server
almost nothing (the capacity benchmark). --switch: the picture alternates
between 1280x720 and 640x480 every SECONDS, as a camera whose settings are
edited (the encoder starts a new sequence with new parameter sets).
--tls: RTSPS with this certificate and key (PEM). --digest: clients must
authenticate with Digest as USER/PASS."""
import sys, gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0"); gi.require_version("GstRtsp", "1.0")
from gi.repository import Gst, GstRtspServer, GstRtsp, GLib, Gio

Gst.init(None)
args = sys.argv[1:]
port = args[0] if args and not args[0].startswith("--") else "8554"
def opt(name, n=1):
    if name not in args:
        return None
    i = args.index(name)
    return args[i + 1:i + 1 + n] if n > 1 else args[i + 1]

codec = opt("--codec") or "h264"
ENC = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=20 ! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=20 ! video/x-h265,profile=main ! rtph265pay name=pay0 pt=96 config-interval=-1",
    "mjpeg": "jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26",
}[codec]
switch = opt("--switch")
SIZES = [(1280, 720), (640, 480)]
# Fixed caps: before the producer delivers, intervideosrc fills in with black
# frames, which must have the sample's size too.
RAW = "video/x-raw,width=768,height=576,framerate=10/1"
if switch:
    RAW += " ! videoscale ! capsfilter name=size caps=video/x-raw,width=1280,height=720"

if "--file" in args:
    launch = f"( filesrc location={opt('--file')} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
elif "--test" in args:
    launch = f"( videotestsrc is-live=true ! {RAW} ! videoconvert ! video/x-raw,format=I420 ! {ENC} )"
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
    launch = f"( intervideosrc channel=cam ! {RAW} ! videoconvert ! video/x-raw,format=I420 ! {ENC} )"

server = GstRtspServer.RTSPServer(service=port, address="127.0.0.1")
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(launch)
factory.set_shared("--file" not in args)

if switch:
    def configured(_factory, media):
        size = media.get_element().get_by_name("size")
        state = {"i": 0}
        def flip():
            state["i"] ^= 1
            w, h = SIZES[state["i"]]
            size.set_property("caps", Gst.Caps.from_string(f"video/x-raw,width={w},height={h}"))
            print(f"size {w}x{h}", flush=True)
            return True
        GLib.timeout_add(int(float(switch) * 1000), flip)
    factory.connect("media-configure", configured)

tls, digest = opt("--tls", 2), opt("--digest", 2)
if tls or digest:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "user")
    factory.add_role_from_structure(Gst.Structure.from_string(
        "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0])
    if tls:
        auth.set_tls_certificate(Gio.TlsCertificate.new_from_files(tls[0], tls[1]))
    if digest:
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        auth.add_digest(digest[0], digest[1], token)
    else:
        auth.set_default_token(token)
    server.set_auth(auth)

server.get_mount_points().add_factory("/cam", factory)
server.attach(None)
print(f"serving rtsp{'s' if tls else ''}://127.0.0.1:{port}/cam", flush=True)
GLib.MainLoop().run()
