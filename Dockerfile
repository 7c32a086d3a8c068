# veil on Debian 12, with OpenCV 4.6 from Debian (blur/detect/opencv.cpp links
# only its dnn, objdetect, imgproc and core modules).
FROM golang:1.26-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libopencv-dev pkg-config \
      libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavdevice-dev libavfilter-dev libswresample-dev libyuv-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -o /out/veil ./cmd/veil

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      libopencv-dnn406 libopencv-objdetect406 libyuv0 \
      opencv-data opencv-doc ffmpeg fonts-dejavu-core python3-pip python3-venv curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY scripts/fetch-models.sh scripts/quantize-model.sh scripts/fetch-person-model.sh scripts/fetch-runtimes.sh /usr/local/share/veil/
# Models under /var/lib/veil/models (the int8 one and the person detector
# made at build time, their tools and packages removed after), OpenVINO and
# ONNX Runtime under /var/lib/veil/runtimes.
ENV VEIL_CACHE=/var/lib/veil
RUN bash /usr/local/share/veil/fetch-models.sh && bash /usr/local/share/veil/quantize-model.sh \
    && bash /usr/local/share/veil/fetch-person-model.sh \
    && rm -rf /var/lib/veil/tools /var/lib/veil/testdata /var/lib/veil/packages && bash /usr/local/share/veil/fetch-runtimes.sh
COPY --from=build /out/veil /usr/local/bin/veil
ENTRYPOINT ["veil"]
CMD ["demo", "-metrics-listen", "0.0.0.0:9108", "-out", "/var/lib/veil/demo"]
