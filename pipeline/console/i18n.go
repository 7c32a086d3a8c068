package console

// zh is the console's Simplified Chinese: each English text of the pages
// and its translation. A text without one shows in English. The privacy
// notice has its own two versions (privacy.html).
var zh = map[string]string{
	"Cameras":                "摄像头",
	"Admin":                  "管理",
	"Privacy":                "隐私告知",
	"Log out":                "退出",
	"No cameras configured.": "没有配置摄像头。",
	"Live video is obscured by veil before it leaves the machine; faces never reach this page.": "实时视频在离开本机之前已由 veil 遮挡人脸；人脸画面不会到达本页面。",
	"Live":                     "实时",
	"connecting…":              "连接中…",
	"Counting lines and zones": "计数线和区域",
	"the first picture of each hour: click to play from it": "每小时的第一张画面：点击从该处播放",
	"Draw on the live picture. A line counts people crossing it; the green arrow is the way that counts as entering. A zone counts the people inside it. Drag a corner to move it.": "在实时画面上绘制。计数线统计穿过它的人数，绿色箭头表示计为进入的方向；区域统计其中的人数。拖动端点或角可移动。",
	"Add a line":                "添加计数线",
	"Add a zone":                "添加区域",
	"Save":                      "保存",
	"served by":                 "所在设备：",
	"served here":               "本机处理",
	"not served by any box now": "暂无设备处理",
	"Where the site's cameras are served is not known now:": "暂时无法获知各摄像头由哪台设备处理：",
	"Recordings of":                     "录像：",
	"‹ earlier":                         "‹ 前一天",
	"later ›":                           "后一天 ›",
	"Day":                               "日期",
	"Show":                              "查看",
	"Go to":                             "跳转到",
	"Play":                              "播放",
	"Export a clip from":                "导出片段：从",
	"to":                                "到",
	"Download":                          "下载",
	"Start":                             "开始",
	"Size":                              "大小",
	"download":                          "下载",
	"No recording this day.":            "这一天没有录像。",
	"This camera is not recorded.":      "此摄像头不录像。",
	"Today":                             "今天",
	"No counts yet today.":              "今天还没有统计数据。",
	"hours of the day":                  "一天中的小时",
	"Day by day":                        "按日统计",
	"people through the lines, by hour": "每小时经过计数线的人数",
	"Days from":                         "从",
	"No counts in these days.":          "这些天没有统计数据。",
	"days":                              "日期",
	"peak occupancy in the day":         "当天最高人数",
	"in":                                "进",
	"out":                               "出",
	"peak occupancy in the hour":        "每小时最高在场人数",
	"Users":                             "用户",
	"Name":                              "名称",
	"Role":                              "角色",
	"in veil.yaml":                      "在 veil.yaml 中",
	"Audit log (latest first)":          "审计日志（最新在前）",
	"Time":                              "时间",
	"Kind":                              "类型",
	"User":                              "用户",
	"From":                              "来源",
	"Camera":                            "摄像头",
	"Detail":                            "详情",
	"Filter":                            "筛选",
	"Export CSV":                        "导出 CSV",
	"any":                               "全部",
}

// tr is text in lang ("zh-CN" or "en").
func tr(lang, text string) string {
	if lang == "zh-CN" {
		if t, ok := zh[text]; ok {
			return t
		}
	}
	return text
}
