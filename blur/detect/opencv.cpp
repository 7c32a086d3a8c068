#include "opencv.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

static std::atomic<long> live{0};

static char* message(const char* what) {
	char* m = static_cast<char*>(std::malloc(std::strlen(what) + 1));
	if (m) std::strcpy(m, what);
	return m;
}

// guard runs f, turning any exception into a message.
template <typename F>
static char* guard(F f) {
	try {
		f();
		return nullptr;
	} catch (const std::exception& e) {
		return message(e.what());
	} catch (...) {
		return message("unknown C++ exception");
	}
}

static cv::Mat blob(const uint8_t* bgr, int h, int w, int inH, int inW) {
	// The picture is only read: the const_cast is for Mat's constructor.
	cv::Mat src(h, w, CV_8UC3, const_cast<uint8_t*>(bgr));
	return cv::dnn::blobFromImage(src, 1.0, cv::Size(inW, inH), cv::Scalar(), true, false);
}

extern "C" {

char* veil_cv_net_read(const void* model, size_t n, void** net) {
	*net = nullptr;
	return guard([&] {
		cv::dnn::Net loaded = cv::dnn::readNetFromONNX(static_cast<const char*>(model), n);
		if (loaded.empty()) throw std::runtime_error("the model has no layers");
		loaded.setPreferableBackend(cv::dnn::DNN_BACKEND_DEFAULT);
		loaded.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
		*net = new cv::dnn::Net(loaded);
		live++;
	});
}

void veil_cv_net_free(void* net) {
	if (!net) return;
	delete static_cast<cv::dnn::Net*>(net);
	live--;
}

char* veil_cv_net_forward(void* net, const uint8_t* bgr, int h, int w, int inH, int inW, const char** names, int n, veil_cv_tensor* outs) {
	for (int i = 0; i < n; i++) outs[i].mat = nullptr;
	return guard([&] {
		cv::dnn::Net* nt = static_cast<cv::dnn::Net*>(net);
		nt->setInput(blob(bgr, h, w, inH, inW));
		std::vector<cv::String> want(names, names + n);
		std::vector<cv::Mat> got;
		nt->forward(got, want);
		if (int(got.size()) != n) throw std::runtime_error("the network returned the wrong number of outputs");
		for (int i = 0; i < n; i++) {
			const cv::Mat& g = got[i];
			if (g.dims != 4 || g.type() != CV_32F || !g.isContinuous()) throw std::runtime_error("an output is not a float32 tensor of 4 dims");
		}
		for (int i = 0; i < n; i++) {
			cv::Mat* m = new cv::Mat(got[i]);
			live++;
			outs[i].mat = m;
			outs[i].data = m->ptr<float>();
			for (int d = 0; d < 4; d++) outs[i].dims[d] = m->size[d];
		}
	});
}

void veil_cv_mat_free(void* mat) {
	if (!mat) return;
	delete static_cast<cv::Mat*>(mat);
	live--;
}

char* veil_cv_cascade_load(const char* path, void** cascade) {
	*cascade = nullptr;
	return guard([&] {
		cv::CascadeClassifier* c = new cv::CascadeClassifier();
		if (!c->load(path)) {
			delete c;
			throw std::runtime_error("OpenCV could not load it");
		}
		live++;
		*cascade = c;
	});
}

void veil_cv_cascade_free(void* cascade) {
	if (!cascade) return;
	delete static_cast<cv::CascadeClassifier*>(cascade);
	live--;
}

char* veil_cv_cascade_detect(void* cascade, const uint8_t* bgr, int h, int w, int min, int** rects, int* n) {
	*rects = nullptr;
	*n = 0;
	return guard([&] {
		cv::Mat src(h, w, CV_8UC3, const_cast<uint8_t*>(bgr));
		cv::Mat grey;
		cv::cvtColor(src, grey, cv::COLOR_BGR2GRAY);
		std::vector<cv::Rect> found;
		static_cast<cv::CascadeClassifier*>(cascade)->detectMultiScale(grey, found, 1.1, 3, 0, cv::Size(min, min), cv::Size());
		if (found.empty()) return;
		int* out = static_cast<int*>(std::malloc(found.size() * 4 * sizeof(int)));
		if (!out) throw std::bad_alloc();
		for (size_t i = 0; i < found.size(); i++) {
			out[4 * i] = found[i].x;
			out[4 * i + 1] = found[i].y;
			out[4 * i + 2] = found[i].width;
			out[4 * i + 3] = found[i].height;
		}
		live++;
		*rects = out;
		*n = int(found.size());
	});
}

void veil_cv_ints_free(int* p) {
	if (!p) return;
	std::free(p);
	live--;
}

long veil_cv_live(void) { return live.load(); }

}  // extern "C"
