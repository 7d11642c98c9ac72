"""The parameters a person edits, then the metadata table (type, allowed range, Chinese meaning, group) that takes
its defaults from them, and the validation of a full set of values.

Edit the `NAME = value` lines right below (like the original system's `ENABLE_SIMULATION_MODE = True`) and
restart; `import config; config.ENABLE_AUTO_TRADING` gives the value written here. Changes made from the web
page are stored separately (`persistence.config_store`) and override these values until reset there."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Mapping, Optional

# ============================================================================================================
# 参数：修改等号右边的值，重启程序后生效。网页上改过的参数以网页为准（可在网页“恢复默认”回到这里的值）。
# ============================================================================================================

# ==== 开关
ENABLE_SIMULATION_MODE = True  # 模拟交易模式（关闭则通过 miniQMT 实盘交易）（需重启）
BROKER = 'miniqmt'  # 实盘券商接口：miniqmt（极简模式）/ bigqmt（大QMT桥接策略）/ remote（远程网关）/ sim（等同模拟交易）（需重启）
BROKER_URL = ''  # BROKER = remote 时：Windows 机器上 qmt_gateway 的地址，如 https://192.168.1.20:5800（需重启）
BROKER_TOKEN = ''  # BROKER = remote 时：qmt_gateway 的访问令牌（不会写入日志）（需重启）
ENABLE_AUTO_TRADING = False  # 自动执行检测到的交易信号（关闭时信号只排队等待人工执行）
ENABLE_ALLOW_BUY = True  # 允许买入
ENABLE_ALLOW_SELL = True  # 允许卖出
ENABLE_DYNAMIC_STOP_PROFIT = True  # 启用止盈止损规则（止损、首次止盈、动态止盈）
ENABLE_GRID_TRADING = False  # 启用网格交易
ENABLE_MACD_BUY = True  # 股票池 MACD 金叉买入
ENABLE_MA_FILTER = True  # MACD 买入要求均线多头排列 MA10>MA20>MA30>MA60
ENABLE_MACD_SELL = False  # MACD 死叉卖出全部可用
ENABLE_ADD_POSITION = True  # 按成本价格档位补仓

# ==== 仓位与补仓
POSITION_UNIT = 20_000.0  # 每次买入金额（元）
MAX_POSITION_VALUE = 50_000.0  # 单只股票最大持仓成本（元）
BUY_GRID_LEVELS = [1.0, 0.93, 0.88]  # 补仓档位：相对首次买入价的比例，降序

# ==== 止盈止损
STOP_LOSS_RATIO = -0.095  # 止损比例：价格 ≤ 成本价×(1+比例) 时全部卖出
INITIAL_TAKE_PROFIT_RATIO = 0.06  # 首次止盈比例：价格 ≥ 成本价×(1+比例) 时部分卖出
INITIAL_TAKE_PROFIT_RATIO_PERCENTAGE = 0.6  # 首次止盈卖出可用持仓的比例
# 动态止盈表：(最高浮盈阈值, 止盈位系数)，阈值升序；止盈位 = 最高价×系数
DYNAMIC_TAKE_PROFIT = [(0.05, 0.96), (0.10, 0.93), (0.15, 0.90), (0.20, 0.87), (0.30, 0.85)]

# ==== 网格交易
GRID_BUY_AMOUNT = 5_000.0  # 网格每格买入金额（元）
GRID_STEP_RATIO = 0.02  # 网格间距（相对上次网格成交价）
GRID_CALLBACK_RATIO = 0.0  # 网格回调比例：从低点反弹/从高点回落该比例后才成交，0 表示到价即成交
GRID_TAKE_PROFIT_RATIO = 0.08  # 网格目标收益率（相对网格最大投入），达到后结束
GRID_STOP_LOSS_RATIO = -0.10  # 网格止损率（相对网格最大投入），达到后结束
GRID_MAX_HOLD_DAYS = 30  # 网格最长运行天数（交易日）
GRID_MAX_INVESTMENT = 20_000.0  # 单个网格最大投入（元）
GRID_MAX_DEVIATION = 0.15  # 价格偏离网格中心超过该比例时结束网格
GRID_COOLDOWN_SECONDS = 60.0  # 同一网格两次成交之间的冷却时间（秒）
GRID_SEND_RETRY_LIMIT = 3  # 网格同一笔委托失败或结果未知时最多重发次数，超过后结束该网格
GRID_RETRY_BACKOFF_SECONDS = 5.0  # 网格委托失败后的首次重发等待（秒），每次失败加倍
GRID_AUTO_START_AFTER_TAKE_PROFIT = False  # 首次止盈后自动为该股票启动网格

# ==== 风控
MAX_TOTAL_POSITION_RATIO = 0.95  # 总持仓市值占总资产的上限
MAX_ORDERS_PER_DAY = 50  # 每个委托来源（策略规则、网格、委托文件、盯盘、手动）每日最多下单笔数；止损等保护性卖出不计
MAX_ORDER_VALUE = 100_000.0  # 单笔委托最大金额（元）
DAILY_LOSS_LIMIT_RATIO = 0.05  # 当日亏损达到总资产该比例后停止自动买入
SIGNAL_MAX_AGE = 60.0  # 信号有效期（真实秒，不随回放加速；再次检测到会刷新），过期不再执行
SIGNAL_COOLDOWN_SECONDS = 30.0  # 同一股票同一规则两次信号之间的冷却时间（秒）
EXIT_RETRY_SECONDS = 1.0  # 止损等保护性卖出被拒或失败后，至少间隔该秒数在下一个行情重试（不启动冷却）
EXIT_RETRY_MAX_SECONDS = 30.0  # 同一只股票的保护性卖出连续被券商拒绝时，重试间隔从 EXIT_RETRY_SECONDS 起逐次翻倍，最长为该秒数
SELL_ORDER_TIMEOUT = 60.0  # 卖单超时（秒）：未成交则撤单并以更积极价格重报
BUY_ORDER_TIMEOUT = 120.0  # 买单超时（秒）：未成交则撤单
MAX_REORDER_TIMES = 3  # 卖单最多重报次数
REORDER_PRICE_STEP = 0.005  # 每次重报相对上次委托价下调的比例（不低于跌停价）
ORDER_PRICE_SLIPPAGE = 0.002  # 自动委托的限价相对现价的让价比例（买加卖减，限于涨跌停内）

# ==== 保护保证（issue 25）
PROTECTION_CHECK_INTERVAL = 1.0  # 保护检查间隔（秒）：清仓条件成立的持仓是否已有卖单在券商处工作
PROTECTION_DEADLINE = 15.0  # 清仓条件成立后超过该秒数仍无卖单工作、又无合理原因，即报「保护失效」
PROTECTION_REPEAT_MINUTES = 5.0  # 保护失效持续期间重复告警的间隔（分钟）
PROTECTION_ORDER_CONFIRM_SECONDS = 30.0  # 实盘卖单最近一次获券商确认（推送或查询列出）超过该秒数即视为状态未核实（至少取券商同步间隔的 2 倍）
HEARTBEAT_URL = ''  # 外部监控的心跳地址（如 healthchecks.io、Uptime Kuma 推送地址），仅在运行且保护正常时访问；留空为关闭
HEARTBEAT_INTERVAL = 60.0  # 访问心跳地址的间隔（秒）

# ==== 运行间隔
MONITOR_INTERVAL = 3.0  # 无新行情时持仓监控的最长间隔（秒）
WATCH_DAILY_LOAD_MS = 8.0  # 盯盘每轮检查最多用于加载当日日线数据（N日新高、MACD、量比）的毫秒数；换日后分几轮加载完，价格提醒不被拖慢
UPDATE_INTERVAL = 60.0  # 行情线程刷新日线等数据的间隔（秒）
POSITION_SYNC_INTERVAL = 5.0  # 持仓内存写入数据库的间隔（秒）
ORDER_CHECK_INTERVAL = 5.0  # 检查未成交委托的间隔（秒）
THREAD_CHECK_INTERVAL = 5.0  # 看门狗检查线程心跳的间隔（秒）
THREAD_STUCK_SECONDS = 60.0  # 线程单步最长耗时的默认值（秒）：未声明自身上限的线程超过「检查间隔 + 该值」无心跳视为卡死并重启
THREAD_MAX_RESTARTS_PER_HOUR = 5  # 每小时最多重启同一线程次数，超过则报警（健康状态变红）并改为按退避间隔继续重试，从不放弃
THREAD_RESTART_BACKOFF_MAX_SECONDS = 60.0  # 线程反复退出时两次重启之间的等待上限（秒）：等待从 1 秒起每次翻倍，直到该值
BROKER_SYNC_INTERVAL = 10.0  # 实盘向券商查询持仓资金的间隔（秒）
QUOTE_STALE_SECONDS = 30.0  # 行情超过该时间未更新视为过期，不用于交易判断（秒）
CLOCK_SKEW_ALARM_SECONDS = 30.0  # 本机时钟与行情时间相差超过该秒数即告警一次（行情是否过期始终按行情自身的时间判断）
CLOCK_SKEW_MAX_SECONDS = 300.0  # 可自动校正的本机时钟偏差上限（秒）；超过则不予校正，行情按本机时钟判断（将视为过期）
QUOTE_REFUSAL_LOG_SECONDS = 60.0  # 同一股票的被拒行情（过期、无效）在该秒数内只记录一条日志，其余计数后汇总

# ==== 券商链路与行情容错（issue 13）
ORDER_ACK_TIMEOUT = 10.0  # 委托发出后最长等待券商编号的时间（秒），超时视为连接失效并重连核对
ORDER_UNKNOWN_SETTLE_SECONDS = 60.0  # 结果未知的委托发出超过该秒数后，按备注仍查不到才判定未送达（期间同一股票同方向不再下单）
QMT_SEND_TIMEOUT = 3.0  # 实盘：向 miniQMT 发出委托或撤单的最长等待（秒），超时按结果未知处理并重连核对
LIVENESS_PROBE_INTERVAL = 5.0  # 交易时段内探测 miniQMT 是否响应的间隔（秒）
LIVENESS_PROBE_DEADLINE = 3.0  # 探测查询的最长等待时间（秒），超时视为 miniQMT 无响应
POSITION_GONE_CONFIRMATIONS = 2  # 连续几次券商持仓查询都没有某只股票才删除本地持仓
DOWNLOAD_DEADLINE = 60.0  # 单只股票下载历史日线的最长等待时间（秒）
PUSH_SILENCE_SECONDS = 15.0  # 订阅的股票超过该时间没有推送而轮询有新行情时重新订阅（秒）

# ==== 交易费用
COMMISSION_RATE = 0.0003  # 佣金费率（双向）
MIN_COMMISSION = 5.0  # 每笔最低佣金（元）
STAMP_DUTY_RATE = 0.0005  # 印花税率（仅卖出）
TRANSFER_FEE_RATE = 0.00001  # 过户费率（双向）

# ==== 市场规则（交易所规则变化时修改；出处见 market_rules.py）
ST_LIMIT_CHANGE_DATE = '2026-07-06'  # 主板 ST/*ST 涨跌幅调整生效日（YYYY-MM-DD）（需重启）
ST_LIMIT_PCT_BEFORE = 0.05  # 生效日之前主板 ST/*ST 的涨跌幅（需重启）
ST_LIMIT_PCT = 0.10  # 生效日起主板 ST/*ST 的涨跌幅（需重启）
HOLIDAYS_FILE = ''  # 节假日文件：每行一个交易所公布的休市日 YYYY-MM-DD（# 后为注释），补充 exchange_calendars 尚未收录的年份；留空不用（需重启）
CALENDAR_WARN_DAYS = 30  # 已知交易日历剩余天数不超过此值时，启动时提醒补充节假日（天）（需重启）

# ==== 品种规则（issue 28）：可转债、T+0 基金、北交所、新股（交易所规则见 market_rules.py；券商不同的数字在这里）
BOND_COMMISSION_RATE = 0.0001  # 可转债佣金费率（双向；券商不同，常见万0.5~万1）
BOND_MIN_COMMISSION = 0.0  # 可转债每笔最低佣金（元；多数券商不收最低 5 元）
T0_ETF_FILE = ''  # T+0（当日回转）基金表 CSV（列 code,name,kind）；留空用程序自带的 market/t0_etfs.csv（需重启）
LISTING_DATES_FILE = ''  # 上市日期表 CSV（列 code,listing_date），用于新股上市前几日无涨跌幅限制；留空则实盘取 miniQMT 的上市日期，未知的按已上市股票处理（需重启）

# ==== 除权除息（issue 28）：除权日开盘前按因子调整本程序自己的价位（最高价、成本、补仓基准、网格、盯盘价格）
EX_RIGHTS_EVENTS_FILE = ''  # 除权除息事件文件 CSV（列 code,ex_date,cash_per_share,shares_per_share[,rights_per_share,rights_price,factor]，每股元/每股股数），回放不复权日线时使用；留空不用（需重启）
EX_RIGHTS_FROM_XTDATA = True  # 实盘：从 miniQMT 行情（xtdata 分红送转数据）读取除权除息事件（需重启）
EX_RIGHTS_GAP_ALARM = True  # 持仓股票开盘跳空超过涨跌停幅度而没有已知的除权除息事件时报警（可能缺少数据）
EX_RIGHTS_SOURCE_TIMEOUT = 5.0  # 实盘读取除权除息数据（xtdata / mootdx）的最长等待（秒）；超时则报警并继续，行情与止损不被卡住（需重启）

# ==== 模拟交易
SIMULATION_BALANCE = 1_000_000.0  # 模拟账户初始资金（元）（需重启）
SIMULATION_IGNORE_TRADING_HOURS = True  # 模拟交易在非交易时段也按最新价成交（T+1 与涨跌停仍生效）
ACCOUNT_CONFIG_FILE = ''  # 实盘账户配置文件（account_config.json）路径；留空为程序目录下的 account_config.json（需重启）

# ==== 行情数据
DATA_SOURCE = 'auto'  # 行情来源：auto 自动 / xtquant / mootdx / replay 回放（需重启）
TDX_DIR = ''  # 通达信安装目录（含 vipdoc），用于离线读取日线（需重启）
MOOTDX_SERVER = ''  # mootdx 在线行情服务器 ip:port；留空则不联网（需重启）
MOOTDX_TIMEOUT = 3.0  # mootdx 在线行情超时（秒）（需重启）
REPLAY_DATA_DIR = ''  # 回放日线目录（<代码>.csv 或通达信 vipdoc）；留空使用演示行情（需重启）
REPLAY_SECONDS_PER_DAY = 240.0  # 回放时一个交易日持续的真实秒数（需重启）
REPLAY_START_DATE = ''  # 回放起始日期 YYYY-MM-DD；留空从数据第 61 个交易日开始（需重启）
REPLAY_TICKS_PER_DAY = 240  # 回放每日产生的行情点数（需重启）
SYNTHETIC_SEED = 20240101  # 演示行情随机种子（需重启）
HISTORY_DAYS = 250  # 启动时加载的历史日线天数（需重启）
BACKTEST_CACHE_MAX_MB = 2048.0  # 回测行情缓存的上限（MB），超过时删除最久未用的条目
REPLAY_CLOCK_ORIGIN = 0.0  # 回放共同起点（Unix 秒）：多个账户按同一时刻起步，同一市场时间看到同样的行情；0 = 不使用（需重启）

# ==== Web服务
WEB_HOST = '127.0.0.1'  # Web 服务监听地址（默认仅本机）（需重启）
WEB_PORT = 5000  # Web 服务端口（需重启）
WEB_API_TOKEN = ''  # API 令牌；留空则首次启动时生成并保存在数据目录 api_token（需重启）
WEB_CORS_ORIGINS = ['http://localhost:5000', 'http://127.0.0.1:5000']  # 允许跨域访问的来源（需重启）
SSE_HEARTBEAT_SECONDS = 15.0  # 实时推送心跳间隔（秒）
WEB_REQUIRE_TOKEN_FOR_READS = False  # 读取类接口也需要 API 令牌（多账户时子进程只允许监管进程访问）（需重启）
SUPERVISOR_PID = 0  # 多账户：监管进程的进程号，由监管进程设置；监管进程退出后本账户安全退出；0 = 独立运行（需重启）
ACCOUNT_RESTART_LIMIT_PER_HOUR = 5  # 多账户：一个账户进程一小时内最多自动重启次数，超过后告警不再重启
ACCOUNT_RESTART_BACKOFF_MAX = 60.0  # 多账户：账户进程意外退出后重启的最长等待（秒，逐次加倍）
ACCOUNT_STOP_TIMEOUT = 15.0  # 多账户：停止账户进程时等待其安全退出的时间（秒），超时强制结束
ACCOUNT_POLL_INTERVAL = 2.0  # 多账户：监管进程查询各账户状态的间隔（秒）

# ==== 日志
LOG_LEVEL = 'INFO'  # 日志级别（需重启）
LOG_RETENTION_DAYS = 30  # 日志保留天数，过期自动删除

# ==== 委托文件
ENABLE_ORDER_FILES = True  # 执行委托文件目录中的 CSV 委托文件
ORDER_FILE_DIR = ''  # 委托文件目录；留空为 <数据目录>/orders/inbox（处理后移入其下 done/ 或 error/）（需重启）
ORDER_FILE_DRY_RUN = False  # 委托文件只校验、写结果文件，不下单
ORDER_FILE_STABLE_SECONDS = 2.0  # 文件大小保持不变该秒数后才读取（避免读到写了一半的文件）
ORDER_FILE_RESCAN_SECONDS = 10.0  # 委托文件目录的周期扫描间隔（秒），作为文件事件的后备
ORDER_FILE_QUOTE_WAIT = 10.0  # 委托文件中尚未订阅行情的股票，等待其首个行情的最长秒数
ORDER_FILE_LINE_INTERVAL = 0.0  # 委托文件逐行下单的间隔（秒），0 为不间隔
ORDER_FILE_STEP_SECONDS = 2.0  # 委托文件线程每一步最长处理时间（秒）：到时让出并报告心跳，下一步从下一行继续
ORDER_FILE_WAIT_RECHECK_SECONDS = 10.0  # 委托文件因交易暂停或委托额度用尽而等待时，重新尝试的间隔（秒）
ORDER_FILE_MAX_LINES_PER_MINUTE = 10  # 委托文件每分钟最多下单行数（同时低于熔断 MAX_ACTIONS_PER_MINUTE 与单股每分钟上限，不会触发熔断）

# ==== 系统诊断
DOCTOR_CLOCK_TOLERANCE_SECONDS = 5.0  # 系统诊断：本机时钟与参考时间相差超过该秒数即报警
DOCTOR_MIN_FREE_MB = 500.0  # 系统诊断：数据目录所在磁盘剩余空间低于该值（MB）即报警
DOCTOR_LOG_DIR_WARN_MB = 1_000.0  # 系统诊断：日志目录超过该大小（MB）即提醒
DOCTOR_BROKER_TIMEOUT = 5.0  # 系统诊断：连接 miniQMT 并查询账户的时限（秒）
DOCTOR_GATEWAY_SLOW_MS = 200.0  # 系统诊断：BROKER = remote 时，到网关的往返超过该毫秒数即提醒（issue 30）

# ==== 通知与定时任务
NOTIFY_URLS = []  # 配置文件中的通知渠道（apprise 地址，如 mailto://…、json://…），接收全部事件；网页中也可添加（需重启）
NOTIFY_SEND_TIMEOUT = 10.0  # 单条通知发送超时（秒）
NOTIFY_MAX_ATTEMPTS = 6  # 单条通知最多尝试次数，之后标记为失败
NOTIFY_RETRY_BASE_SECONDS = 5.0  # 发送失败后的首次重试间隔（秒），之后每次加倍
NOTIFY_RETRY_MAX_SECONDS = 600.0  # 重试间隔上限（秒）
NOTIFY_RATE_LIMIT = 10  # 每个渠道在一个限流窗口内最多发送的消息数（超出的合并为摘要）
NOTIFY_RATE_WINDOW_SECONDS = 60.0  # 限流窗口（秒）
NOTIFY_DIGEST_THRESHOLD = 2  # 同一渠道积压的待发消息达到该条数时合并为一条摘要
NOTIFY_COALESCE_SECONDS = 3.0  # 成交等普通消息：连续到达的消息在停顿该秒数后合并为一条发送（告警类不等待）
NOTIFY_COALESCE_MAX_SECONDS = 15.0  # 普通消息最长等待合并的秒数（持续不断的成交也至少每隔该时间发出一次）
NOTIFY_DIGEST_MAX_CHARS = 20000  # 单条汇总消息的最大字符数，超出的按时间顺序分为多条（钉钉单条上限约 2 万字节）
NOTIFY_ALARM_RATE_LIMIT = 30  # 告警类消息（线程告警、券商断线、保护失效等）在一个限流窗口内的单独额度，不占普通消息额度
NOTIFY_DEDUP_SECONDS = 300.0  # 相同告警在该时间内只发送一次（秒；成交等事实类消息不去重）
NOTIFY_CHANNEL_ALARM_FAILURES = 3  # 渠道连续失败该次数后告警一次（界面与其他渠道）
NOTIFY_PUBLIC_URL = ''  # 通知中附带的网页地址（如 http://192.168.1.10:5000）；留空则不附链接
JOB_PRE_OPEN_TIME = '09:00'  # 盘前任务时间 HH:MM（行情时钟）
JOB_POST_CLOSE_TIME = '15:05'  # 盘后任务时间 HH:MM：账户快照、每日报告
JOB_NIGHTLY_TIME = '20:00'  # 夜间维护时间 HH:MM：数据库备份与检查、日志清理
BACKUP_RETENTION_DAYS = 7  # 数据库备份保留天数

# ==== 远程网关（issue 30）：Windows 机器上的 qmt_gateway（python qmt_gateway.py）与守护进程的 BROKER = remote
GATEWAY_BROKER = 'miniqmt'  # qmt_gateway 包装的券商接口：miniqmt（极简模式）/ bigqmt（大QMT桥接策略）（需重启网关）
GATEWAY_HOST = '127.0.0.1'  # qmt_gateway 监听的地址；默认只允许本机，局域网访问填 0.0.0.0 或本机网卡地址（需重启网关）
GATEWAY_PORT = 5800  # qmt_gateway 监听的端口（需重启网关）
GATEWAY_TOKEN = ''  # qmt_gateway 的访问令牌（至少 16 个字符）；留空则自动生成并保存在网关数据目录的 gateway_token 文件中（不会写入日志）（需重启网关）
GATEWAY_ALLOWED_CLIENTS = ['127.0.0.1', '::1']  # 允许访问 qmt_gateway 的客户端地址或网段，如 192.168.1.10、192.168.1.0/24（需重启网关）
GATEWAY_READ_ONLY = False  # 网关只读模式：只提供查询、行情和事件，拒绝委托与撤单（给不应交易的看板用）（需重启网关）
GATEWAY_TIME_WINDOW = 30.0  # 请求时间戳与网关时钟允许相差的秒数（超出即拒绝，防重放）（需重启网关）
GATEWAY_EVENT_WAIT = 20.0  # 事件长轮询在网关上最多挂起的秒数（需重启网关）
GATEWAY_EVENT_BATCH = 500  # 一次应答最多携带的事件条数（需重启网关）
GATEWAY_THREADS = 16  # qmt_gateway 处理请求的线程数（需重启网关）
GATEWAY_LINK_CHECK_INTERVAL = 1.0  # 网关检查券商连接状态变化的间隔（秒）（需重启网关）
GATEWAY_REQUEST_TIMEOUT = 5.0  # 守护进程：一次网关请求的最长等待（秒）；委托超时即为结果未知（按备注核对，重试不会重复下单）（需重启）
GATEWAY_PROBE_INTERVAL = 2.0  # 守护进程：无事件时每隔该秒数探测一次网关是否存活（事件长轮询的挂起时长）（需重启）
GATEWAY_RECONNECT_FIRST_DELAY = 0.5  # 守护进程：与网关断开后第一次重连前的等待（秒），之后每次翻倍（需重启）
GATEWAY_RECONNECT_MAX_DELAY = 10.0  # 守护进程：重连网关等待的上限（秒）（需重启）
GATEWAY_READER = 'daemon'  # 守护进程：在网关上的事件读者名（字母数字）；同一网关的每个读者（交易守护进程、只读看板）须用不同的名字，各自接收全部事件（需重启）

# ==== 券商调用限时、熔断、存储与 Web 连接（issue 21）
BROKER_CALL_TIMEOUT = 10.0  # 券商接口单次调用的最长等待（秒）；超时的委托记为状态未知并与券商核对，不会自动重发
QMT_QUERY_TIMEOUT = 10.0  # 实盘：向 miniQMT 查询资产、持仓、委托的最长等待（秒）（需重启）
QMT_CONNECT_TIMEOUT = 20.0  # 实盘：连接 miniQMT 的最长等待（秒）（需重启）
QMT_RECONNECT_FIRST_DELAY = 1.0  # 实盘：与 miniQMT 断开后第一次重连前的等待（秒），之后每次翻倍（需重启）
QMT_RECONNECT_MAX_DELAY = 60.0  # 实盘：重连等待的上限（秒）（需重启）
QMT_RECONNECT_SESSION_MAX_DELAY = 2.0  # 实盘：交易时段内重连等待的上限（秒），miniQMT 恢复响应后数秒内即重连
MAX_ORDERS_PER_STOCK_PER_DAY = 20  # 熔断：单只股票每个来源每日最多自动委托笔数，达到后该股的该来源停止自动交易
MAX_CANCELS_PER_DAY = 100  # 熔断：账户每个来源每日最多撤单笔数，达到后全账户的该来源停止自动交易
MAX_ORDER_VOLUME = 100_000  # 熔断：单笔委托最多股数，自动委托超过则拒绝并停止该股该来源的自动交易
MAX_ACTIONS_PER_MINUTE = 20  # 熔断：账户每个来源每分钟最多委托+撤单笔数，达到后全账户的该来源停止自动交易（交易所程序化交易高频标准为每秒 300 笔或每日 2 万笔，本默认值远低于此）
MAX_ACTIONS_PER_STOCK_PER_MINUTE = 6  # 熔断：单只股票每个来源每分钟最多委托+撤单笔数，达到后该股的该来源停止自动交易
STORAGE_MIN_FREE_MB = 200.0  # 数据目录所在磁盘剩余空间下限（MB），低于则停止自动交易（磁盘已满）
STORAGE_CHECK_INTERVAL = 5.0  # 检查磁盘剩余空间的间隔（秒）；磁盘满导致的停止交易在空间恢复后的下一次检查时解除
WEB_CONNECTION_LIMIT = 1000  # Web 服务最多同时打开的连接数（空闲连接不占处理线程；超过时关闭最久无进展的空闲连接，远程的优先，本机操作总能接入）（需重启）
WEB_IDLE_TIMEOUT = 30.0  # 空闲连接超过该时间（秒）即关闭（需重启）
WEB_REQUEST_READ_TIMEOUT = 10.0  # 连接须在该秒数内送完一个完整请求，否则关闭（防止慢速连接占满服务）（需重启）
WEB_SSE_PER_CLIENT = 3  # 同一客户端地址最多同时打开的实时推送连接数

# ==== 大QMT桥接（issue 29）
BIGQMT_HOST = '127.0.0.1'  # BROKER = bigqmt 时：大QMT 中桥接策略监听的地址（只用本机回环地址）（需重启）
BIGQMT_PORT = 58610  # BROKER = bigqmt 时：桥接策略监听的端口，须与策略文件中的 PORT 一致（需重启）
BIGQMT_TRANSPORT = 'tcp'  # 与桥接策略的通信方式：tcp（本机 TCP，默认）/ folder（文件夹，大QMT 不能加载 socket 模块时用），须与策略文件中的 TRANSPORT 一致（需重启）
BIGQMT_FOLDER = 'C:/qmt_daemon_bridge'  # BIGQMT_TRANSPORT = folder 时的文件夹，须与策略文件中的 FOLDER 一致（需重启）
BIGQMT_CONNECT_TIMEOUT = 5.0  # 连接大QMT 桥接策略并核对版本的最长等待（秒）（需重启）
BIGQMT_CANCEL_VERIFY_SECONDS = 10.0  # 撤单后桥接策略观察委托状态的时长（秒），届时仍未变为已撤即报告撤单未生效

# ==== 闲置资金（issue 28）：新股新债申购与隔夜国债逆回购，默认关闭，只在实盘账户运行（市场规则与出处见 chores/rules.py）
ENABLE_IPO_SUBSCRIBE = False  # 每个交易日按券商给的额度申购当日全部（或筛选后的）新股、新债，并检查中签（只在实盘账户运行）
IPO_SUBSCRIBE_TIME = '10:00'  # 申购任务时间 HH:MM（行情时钟，须在交易时段内）；同一任务检查此前申购的中签
IPO_SUBSCRIBE_KINDS = ['stock', 'bond']  # 申购哪些品种：stock 新股、bond 新债（可转债、可交换债）
IPO_SUBSCRIBE_EXCLUDE = []  # 不申购的申购代码或名称（如 732123.SH、某某转债），完全相同才排除
IPO_ALLOTMENT_DAYS = 5  # 申购后在多少个交易日内检查中签（结果在 T+2 公布，多留几天余量）
ENABLE_REPO = False  # 在 REPO_TIME 把多余的可用资金做隔夜国债逆回购（只在实盘账户运行）
REPO_TIME = '14:55'  # 逆回购任务时间 HH:MM（行情时钟；逆回购交易到 15:30）
REPO_KEEP_CASH = 10000.0  # 逆回购后至少留下的可用资金（元）；另扣除未成交买单、次日计划买入与中签待缴款
REPO_CODES = ['204001.SH', '131810.SZ']  # 可用的逆回购代码（1 天期：沪市 204001.SH、深市 131810.SZ），利率相同取靠前的

# ============================================================================================================
# Metadata: every parameter above with its type, range, meaning and group. A new parameter needs both a
# `NAME = value  # 含义` line above and a `_p("NAME", NAME, ...)` row below (test_config_file checks the pairing).

# Groups, in the order the web page shows them.
G_SWITCH, G_POSITION, G_EXIT, G_GRID, G_RISK, G_TIMING = "开关", "仓位与补仓", "止盈止损", "网格交易", "风控", "运行间隔"
G_FEES, G_SIM, G_DATA, G_WEB, G_LOG = "交易费用", "模拟交易", "行情数据", "Web服务", "日志"
G_ORDER_FILES, G_DOCTOR = "委托文件", "系统诊断"  # issue 19
G_NOTIFY = "通知与定时任务"  # issue 16
G_MARKET = "市场规则"  # issue 33
G_PROTECTION = "保护保证"  # issue 25
G_GATEWAY = "远程网关"  # issue 30
G_BIGQMT = "大QMT桥接"  # issue 29
G_CHORES = "闲置资金"  # issue 28 §3


@dataclass(frozen=True)
class Param:
    key: str
    default: Any
    kind: str  # bool | int | float | str | choice | float_list | rate_table | str_list
    meaning: str
    group: str
    min: Optional[float] = None
    max: Optional[float] = None
    choices: tuple = ()
    restart: bool = False  # takes effect only after a restart
    secret: bool = False  # never shown or logged

    def describe_range(self) -> str:
        if self.choices:
            return " / ".join(map(str, self.choices))
        if self.min is not None or self.max is not None:
            return f"{_fmt(self.min)} ~ {_fmt(self.max)}"
        return ""


def _p(key, default, kind, meaning, group, min=None, max=None, choices=(), restart=False, secret=False) -> Param:
    return Param(key, default, kind, meaning, group, min, max, tuple(choices), restart, secret)


PARAMS: tuple[Param, ...] = (
    # ---- switches
    _p("ENABLE_SIMULATION_MODE", ENABLE_SIMULATION_MODE, "bool", "模拟交易模式（关闭则通过 miniQMT 实盘交易）", G_SWITCH, restart=True),
    _p("BROKER", BROKER, "choice", "实盘券商接口：miniqmt（极简模式）/ bigqmt（大QMT桥接策略）/ remote（远程网关）/ sim（等同模拟交易）",
       G_SWITCH, choices=("miniqmt", "bigqmt", "remote", "sim"), restart=True),
    _p("BROKER_URL", BROKER_URL, "str", "BROKER = remote 时：Windows 机器上 qmt_gateway 的地址", G_SWITCH, restart=True),
    _p("BROKER_TOKEN", BROKER_TOKEN, "str", "BROKER = remote 时：qmt_gateway 的访问令牌", G_SWITCH, restart=True, secret=True),
    _p("ENABLE_AUTO_TRADING", ENABLE_AUTO_TRADING, "bool", "自动执行检测到的交易信号（关闭时信号只排队等待人工执行）", G_SWITCH),
    _p("ENABLE_ALLOW_BUY", ENABLE_ALLOW_BUY, "bool", "允许买入", G_SWITCH),
    _p("ENABLE_ALLOW_SELL", ENABLE_ALLOW_SELL, "bool", "允许卖出", G_SWITCH),
    _p("ENABLE_DYNAMIC_STOP_PROFIT", ENABLE_DYNAMIC_STOP_PROFIT, "bool", "启用止盈止损规则（止损、首次止盈、动态止盈）", G_SWITCH),
    _p("ENABLE_GRID_TRADING", ENABLE_GRID_TRADING, "bool", "启用网格交易", G_SWITCH),
    _p("ENABLE_MACD_BUY", ENABLE_MACD_BUY, "bool", "股票池 MACD 金叉买入", G_SWITCH),
    _p("ENABLE_MA_FILTER", ENABLE_MA_FILTER, "bool", "MACD 买入要求均线多头排列 MA10>MA20>MA30>MA60", G_SWITCH),
    _p("ENABLE_MACD_SELL", ENABLE_MACD_SELL, "bool", "MACD 死叉卖出全部可用", G_SWITCH),
    _p("ENABLE_ADD_POSITION", ENABLE_ADD_POSITION, "bool", "按成本价格档位补仓", G_SWITCH),
    # ---- sizing and add levels
    _p("POSITION_UNIT", POSITION_UNIT, "float", "每次买入金额（元）", G_POSITION, 1000, 10_000_000),
    _p("MAX_POSITION_VALUE", MAX_POSITION_VALUE, "float", "单只股票最大持仓成本（元）", G_POSITION, 1000, 100_000_000),
    _p("BUY_GRID_LEVELS", BUY_GRID_LEVELS, "float_list", "补仓档位：相对首次买入价的比例，降序", G_POSITION, 0.3, 1.0),
    # ---- exits
    _p("STOP_LOSS_RATIO", STOP_LOSS_RATIO, "float", "止损比例：价格 ≤ 成本价×(1+比例) 时全部卖出", G_EXIT, -0.5, -0.001),
    _p("INITIAL_TAKE_PROFIT_RATIO", INITIAL_TAKE_PROFIT_RATIO, "float", "首次止盈比例：价格 ≥ 成本价×(1+比例) 时部分卖出", G_EXIT,
       0.005, 2.0),
    _p("INITIAL_TAKE_PROFIT_RATIO_PERCENTAGE", INITIAL_TAKE_PROFIT_RATIO_PERCENTAGE, "float", "首次止盈卖出可用持仓的比例",
       G_EXIT, 0.01, 1.0),
    _p("DYNAMIC_TAKE_PROFIT", DYNAMIC_TAKE_PROFIT, "rate_table",
       "动态止盈表：(最高浮盈阈值, 止盈位系数)，阈值升序；止盈位 = 最高价×系数", G_EXIT, 0.0, 10.0),
    # ---- grid
    _p("GRID_BUY_AMOUNT", GRID_BUY_AMOUNT, "float", "网格每格买入金额（元）", G_GRID, 500, 1_000_000),
    _p("GRID_STEP_RATIO", GRID_STEP_RATIO, "float", "网格间距（相对上次网格成交价）", G_GRID, 0.002, 0.5),
    _p("GRID_CALLBACK_RATIO", GRID_CALLBACK_RATIO, "float", "网格回调比例：从低点反弹/从高点回落该比例后才成交，0 表示到价即成交", G_GRID, 0.0, 0.2),
    _p("GRID_TAKE_PROFIT_RATIO", GRID_TAKE_PROFIT_RATIO, "float", "网格目标收益率（相对网格最大投入），达到后结束", G_GRID, 0.001, 5.0),
    _p("GRID_STOP_LOSS_RATIO", GRID_STOP_LOSS_RATIO, "float", "网格止损率（相对网格最大投入），达到后结束", G_GRID, -0.9, -0.001),
    _p("GRID_MAX_HOLD_DAYS", GRID_MAX_HOLD_DAYS, "int", "网格最长运行天数（交易日）", G_GRID, 1, 365),
    _p("GRID_MAX_INVESTMENT", GRID_MAX_INVESTMENT, "float", "单个网格最大投入（元）", G_GRID, 1000, 10_000_000),
    _p("GRID_MAX_DEVIATION", GRID_MAX_DEVIATION, "float", "价格偏离网格中心超过该比例时结束网格", G_GRID, 0.01, 1.0),
    _p("GRID_COOLDOWN_SECONDS", GRID_COOLDOWN_SECONDS, "float", "同一网格两次成交之间的冷却时间（秒）", G_GRID, 0, 86400),
    _p("GRID_SEND_RETRY_LIMIT", GRID_SEND_RETRY_LIMIT, "int", "网格同一笔委托失败或结果未知时最多重发次数，超过后结束该网格", G_GRID, 0, 20),
    _p("GRID_RETRY_BACKOFF_SECONDS", GRID_RETRY_BACKOFF_SECONDS, "float", "网格委托失败后的首次重发等待（秒），每次失败加倍", G_GRID, 0.1, 3600),
    _p("GRID_AUTO_START_AFTER_TAKE_PROFIT", GRID_AUTO_START_AFTER_TAKE_PROFIT, "bool", "首次止盈后自动为该股票启动网格", G_GRID),
    # ---- risk limits
    _p("MAX_TOTAL_POSITION_RATIO", MAX_TOTAL_POSITION_RATIO, "float", "总持仓市值占总资产的上限", G_RISK, 0.05, 1.0),
    _p("MAX_ORDERS_PER_DAY", MAX_ORDERS_PER_DAY, "int", "每个委托来源（策略规则、网格、委托文件、盯盘、手动）每日最多下单笔数；"
       "止损等保护性卖出不计", G_RISK, 1, 10000),
    _p("MAX_ORDER_VALUE", MAX_ORDER_VALUE, "float", "单笔委托最大金额（元）", G_RISK, 100, 100_000_000),
    _p("DAILY_LOSS_LIMIT_RATIO", DAILY_LOSS_LIMIT_RATIO, "float", "当日亏损达到总资产该比例后停止自动买入", G_RISK, 0.001, 1.0),
    _p("SIGNAL_MAX_AGE", SIGNAL_MAX_AGE, "float", "信号有效期（真实秒，不随回放加速；再次检测到会刷新），过期不再执行", G_RISK, 1, 86400),
    _p("SIGNAL_COOLDOWN_SECONDS", SIGNAL_COOLDOWN_SECONDS, "float", "同一股票同一规则两次信号之间的冷却时间（秒）", G_RISK, 0, 86400),
    _p("EXIT_RETRY_SECONDS", EXIT_RETRY_SECONDS, "float", "止损等保护性卖出被拒或失败后，至少间隔该秒数在下一个行情重试（不启动冷却）", G_RISK, 0.1, 60),
    _p("EXIT_RETRY_MAX_SECONDS", EXIT_RETRY_MAX_SECONDS, "float", "同一只股票的保护性卖出连续被券商拒绝时，重试间隔从 "
       "EXIT_RETRY_SECONDS 起逐次翻倍，最长为该秒数", G_RISK, 0.1, 3600),
    _p("SELL_ORDER_TIMEOUT", SELL_ORDER_TIMEOUT, "float", "卖单超时（秒）：未成交则撤单并以更积极价格重报", G_RISK, 1, 3600),
    _p("BUY_ORDER_TIMEOUT", BUY_ORDER_TIMEOUT, "float", "买单超时（秒）：未成交则撤单", G_RISK, 1, 3600),
    _p("MAX_REORDER_TIMES", MAX_REORDER_TIMES, "int", "卖单最多重报次数", G_RISK, 0, 20),
    _p("REORDER_PRICE_STEP", REORDER_PRICE_STEP, "float", "每次重报相对上次委托价下调的比例（不低于跌停价）", G_RISK, 0.0, 0.1),
    _p("ORDER_PRICE_SLIPPAGE", ORDER_PRICE_SLIPPAGE, "float", "自动委托的限价相对现价的让价比例（买加卖减，限于涨跌停内）", G_RISK, 0.0, 0.05),
    # ---- issue 25: the protection guarantee (DESIGN §8a) and the heartbeat to an outside monitor
    _p("PROTECTION_CHECK_INTERVAL", PROTECTION_CHECK_INTERVAL, "float", "保护检查间隔（秒）：清仓条件成立的持仓是否已有卖单在券商处工作",
       G_PROTECTION, 0.1, 60),
    _p("PROTECTION_DEADLINE", PROTECTION_DEADLINE, "float", "清仓条件成立后超过该秒数仍无卖单工作、又无合理原因，即报「保护失效」",
       G_PROTECTION, 1, 600),
    _p("PROTECTION_REPEAT_MINUTES", PROTECTION_REPEAT_MINUTES, "float", "保护失效持续期间重复告警的间隔（分钟）", G_PROTECTION,
       0.5, 1440),
    _p("PROTECTION_ORDER_CONFIRM_SECONDS", PROTECTION_ORDER_CONFIRM_SECONDS, "float", "实盘卖单最近一次获券商确认（推送或查询"
       "列出）超过该秒数即视为状态未核实（至少取券商同步间隔的 2 倍）", G_PROTECTION, 5, 3600),
    _p("HEARTBEAT_URL", HEARTBEAT_URL, "str", "外部监控的心跳地址（如 healthchecks.io、Uptime Kuma 推送地址），仅在运行且保护"
       "正常时访问；留空为关闭", G_PROTECTION, secret=True),
    _p("HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL, "float", "访问心跳地址的间隔（秒）", G_PROTECTION, 5, 3600),
    # ---- loop timing
    _p("MONITOR_INTERVAL", MONITOR_INTERVAL, "float", "无新行情时持仓监控的最长间隔（秒）", G_TIMING, 0.1, 600),
    _p("WATCH_DAILY_LOAD_MS", WATCH_DAILY_LOAD_MS, "float", "盯盘每轮检查最多用于加载当日日线数据（N日新高、MACD、量比）的"
       "毫秒数；换日后分几轮加载完，价格提醒不被拖慢", G_TIMING, 1, 1000),
    _p("UPDATE_INTERVAL", UPDATE_INTERVAL, "float", "行情线程刷新日线等数据的间隔（秒）", G_TIMING, 1, 86400),
    _p("POSITION_SYNC_INTERVAL", POSITION_SYNC_INTERVAL, "float", "持仓内存写入数据库的间隔（秒）", G_TIMING, 0.5, 600),
    _p("ORDER_CHECK_INTERVAL", ORDER_CHECK_INTERVAL, "float", "检查未成交委托的间隔（秒）", G_TIMING, 0.5, 600),
    _p("THREAD_CHECK_INTERVAL", THREAD_CHECK_INTERVAL, "float", "看门狗检查线程心跳的间隔（秒）", G_TIMING, 0.5, 600),
    _p("THREAD_STUCK_SECONDS", THREAD_STUCK_SECONDS, "float", "线程单步最长耗时的默认值（秒）：未声明自身上限的线程超过"
       "「检查间隔 + 该值」无心跳视为卡死并重启", G_TIMING, 2, 3600),
    _p("THREAD_RESTART_BACKOFF_MAX_SECONDS", THREAD_RESTART_BACKOFF_MAX_SECONDS, "float", "线程反复退出时两次重启之间的等待"
       "上限（秒）：等待从 1 秒起每次翻倍，直到该值", G_TIMING, 1, 3600),
    _p("THREAD_MAX_RESTARTS_PER_HOUR", THREAD_MAX_RESTARTS_PER_HOUR, "int", "每小时最多重启同一线程次数，超过则报警（健康状态变红）"
       "并改为按退避间隔继续重试，从不放弃", G_TIMING, 1,
       100),
    _p("BROKER_SYNC_INTERVAL", BROKER_SYNC_INTERVAL, "float", "实盘向券商查询持仓资金的间隔（秒）", G_TIMING, 1, 600),
    _p("QUOTE_STALE_SECONDS", QUOTE_STALE_SECONDS, "float", "行情超过该时间未更新视为过期，不用于交易判断（秒）", G_TIMING, 1, 3600),
    _p("CLOCK_SKEW_ALARM_SECONDS", CLOCK_SKEW_ALARM_SECONDS, "float", "本机时钟与行情时间相差超过该秒数即告警一次（行情是否过期"
       "始终按行情自身的时间判断）", G_TIMING, 1, 3600),
    _p("CLOCK_SKEW_MAX_SECONDS", CLOCK_SKEW_MAX_SECONDS, "float", "可自动校正的本机时钟偏差上限（秒）；超过则不予校正，行情按本机"
       "时钟判断（将视为过期）", G_TIMING, 1, 86400),
    _p("QUOTE_REFUSAL_LOG_SECONDS", QUOTE_REFUSAL_LOG_SECONDS, "float", "同一股票的被拒行情（过期、无效）在该秒数内只记录一条日志，"
       "其余计数后汇总", G_TIMING, 1, 3600),
    # ---- fees
    _p("COMMISSION_RATE", COMMISSION_RATE, "float", "佣金费率（双向）", G_FEES, 0.0, 0.003),
    _p("MIN_COMMISSION", MIN_COMMISSION, "float", "每笔最低佣金（元）", G_FEES, 0.0, 100),
    _p("STAMP_DUTY_RATE", STAMP_DUTY_RATE, "float", "印花税率（仅卖出）", G_FEES, 0.0, 0.01),
    _p("TRANSFER_FEE_RATE", TRANSFER_FEE_RATE, "float", "过户费率（双向）", G_FEES, 0.0, 0.001),
    _p("ST_LIMIT_CHANGE_DATE", ST_LIMIT_CHANGE_DATE, "str", "主板 ST/*ST 涨跌幅调整生效日（YYYY-MM-DD）", G_MARKET,
       restart=True),
    _p("ST_LIMIT_PCT_BEFORE", ST_LIMIT_PCT_BEFORE, "float", "生效日之前主板 ST/*ST 的涨跌幅", G_MARKET, 0.01, 0.5,
       restart=True),
    _p("ST_LIMIT_PCT", ST_LIMIT_PCT, "float", "生效日起主板 ST/*ST 的涨跌幅", G_MARKET, 0.01, 0.5, restart=True),
    _p("HOLIDAYS_FILE", HOLIDAYS_FILE, "str", "节假日文件：每行一个交易所公布的休市日 YYYY-MM-DD（# 后为注释），补充 "
       "exchange_calendars 尚未收录的年份；留空不用", G_MARKET, restart=True),
    _p("CALENDAR_WARN_DAYS", CALENDAR_WARN_DAYS, "int", "已知交易日历剩余天数不超过此值时，启动时提醒补充节假日（天）", G_MARKET,
       0, 366, restart=True),
    # ---- instruments (issue 28)
    _p("BOND_COMMISSION_RATE", BOND_COMMISSION_RATE, "float", "可转债佣金费率（双向；券商不同，常见万0.5~万1）", G_FEES, 0.0, 0.003),
    _p("BOND_MIN_COMMISSION", BOND_MIN_COMMISSION, "float", "可转债每笔最低佣金（元；多数券商不收最低 5 元）", G_FEES, 0.0, 100),
    _p("T0_ETF_FILE", T0_ETF_FILE, "str", "T+0（当日回转）基金表 CSV（列 code,name,kind）；留空用程序自带的 market/t0_etfs.csv",
       G_MARKET, restart=True),
    _p("LISTING_DATES_FILE", LISTING_DATES_FILE, "str", "上市日期表 CSV（列 code,listing_date），用于新股上市前几日无涨跌幅限制；"
       "留空则实盘取 miniQMT 的上市日期，未知的按已上市股票处理", G_MARKET, restart=True),
    # ---- ex-rights days (issue 28)
    _p("EX_RIGHTS_EVENTS_FILE", EX_RIGHTS_EVENTS_FILE, "str", "除权除息事件文件 CSV（列 code,ex_date,cash_per_share,"
       "shares_per_share[,rights_per_share,rights_price,factor]，每股元/每股股数），回放不复权日线时使用；留空不用", G_DATA,
       restart=True),
    _p("EX_RIGHTS_FROM_XTDATA", EX_RIGHTS_FROM_XTDATA, "bool", "实盘：从 miniQMT 行情（xtdata 分红送转数据）读取除权除息事件",
       G_DATA, restart=True),
    _p("EX_RIGHTS_GAP_ALARM", EX_RIGHTS_GAP_ALARM, "bool", "持仓股票开盘跳空超过涨跌停幅度而没有已知的除权除息事件时报警（可能缺少数据）",
       G_DATA),
    _p("EX_RIGHTS_SOURCE_TIMEOUT", EX_RIGHTS_SOURCE_TIMEOUT, "float", "实盘读取除权除息数据（xtdata / mootdx）的最长等待（秒）；"
       "超时则报警并继续，行情与止损不被卡住", G_DATA, 0.5, 60, restart=True),
    # ---- simulation
    _p("SIMULATION_BALANCE", SIMULATION_BALANCE, "float", "模拟账户初始资金（元）", G_SIM, 1000, 1e10, restart=True),
    _p("SIMULATION_IGNORE_TRADING_HOURS", SIMULATION_IGNORE_TRADING_HOURS, "bool", "模拟交易在非交易时段也按最新价成交（T+1 与涨跌停仍生效）",
       G_SIM),
    # ---- data
    _p("DATA_SOURCE", DATA_SOURCE, "choice", "行情来源：auto 自动 / xtquant / mootdx / replay 回放", G_DATA,
       choices=("auto", "xtquant", "mootdx", "replay"), restart=True),
    _p("TDX_DIR", TDX_DIR, "str", "通达信安装目录（含 vipdoc），用于离线读取日线", G_DATA, restart=True),
    _p("MOOTDX_SERVER", MOOTDX_SERVER, "str", "mootdx 在线行情服务器 ip:port；留空则不联网", G_DATA, restart=True),
    _p("MOOTDX_TIMEOUT", MOOTDX_TIMEOUT, "float", "mootdx 在线行情超时（秒）", G_DATA, 0.5, 60, restart=True),
    _p("REPLAY_DATA_DIR", REPLAY_DATA_DIR, "str", "回放日线目录（<代码>.csv 或通达信 vipdoc）；留空使用演示行情", G_DATA, restart=True),
    _p("REPLAY_SECONDS_PER_DAY", REPLAY_SECONDS_PER_DAY, "float", "回放时一个交易日持续的真实秒数", G_DATA, 0.01, 86400, restart=True),
    _p("REPLAY_START_DATE", REPLAY_START_DATE, "str", "回放起始日期 YYYY-MM-DD；留空从数据第 61 个交易日开始", G_DATA, restart=True),
    _p("REPLAY_TICKS_PER_DAY", REPLAY_TICKS_PER_DAY, "int", "回放每日产生的行情点数", G_DATA, 4, 100000, restart=True),
    _p("SYNTHETIC_SEED", SYNTHETIC_SEED, "int", "演示行情随机种子", G_DATA, 0, 2**31 - 1, restart=True),
    _p("HISTORY_DAYS", HISTORY_DAYS, "int", "启动时加载的历史日线天数", G_DATA, 60, 5000, restart=True),
    _p("BACKTEST_CACHE_MAX_MB", BACKTEST_CACHE_MAX_MB, "float", "回测行情缓存的上限（MB），超过时删除最久未用的条目", G_DATA,
       10, 1e6),
    # ---- issue 13: live broker liveness and reconciliation (a hung miniQMT, empty answers, late reports)
    _p("ORDER_ACK_TIMEOUT", ORDER_ACK_TIMEOUT, "float", "委托发出后最长等待券商编号的时间（秒），超时视为连接失效并重连核对", G_TIMING, 0.2, 300),
    _p("ORDER_UNKNOWN_SETTLE_SECONDS", ORDER_UNKNOWN_SETTLE_SECONDS, "float", "结果未知的委托发出超过该秒数后，按备注仍查不到才判定"
       "未送达（期间同一股票同方向不再下单）", G_TIMING, 1, 3600),
    _p("QMT_SEND_TIMEOUT", QMT_SEND_TIMEOUT, "float", "实盘：向 miniQMT 发出委托或撤单的最长等待（秒），超时按结果未知处理并重连核对",
       G_TIMING, 0.1, 60),
    _p("LIVENESS_PROBE_INTERVAL", LIVENESS_PROBE_INTERVAL, "float", "交易时段内探测 miniQMT 是否响应的间隔（秒）", G_TIMING, 0.1, 600),
    _p("LIVENESS_PROBE_DEADLINE", LIVENESS_PROBE_DEADLINE, "float", "探测查询的最长等待时间（秒），超时视为 miniQMT 无响应", G_TIMING, 0.1, 60),
    _p("POSITION_GONE_CONFIRMATIONS", POSITION_GONE_CONFIRMATIONS, "int", "连续几次券商持仓查询都没有某只股票才删除本地持仓", G_TIMING, 2, 20),
    _p("DOWNLOAD_DEADLINE", DOWNLOAD_DEADLINE, "float", "单只股票下载历史日线的最长等待时间（秒）", G_DATA, 0.1, 3600),
    _p("PUSH_SILENCE_SECONDS", PUSH_SILENCE_SECONDS, "float", "订阅的股票超过该时间没有推送而轮询有新行情时重新订阅（秒）", G_TIMING, 0.1, 600),
    # ---- web
    _p("WEB_HOST", WEB_HOST, "str", "Web 服务监听地址（默认仅本机）", G_WEB, restart=True),
    _p("WEB_PORT", WEB_PORT, "int", "Web 服务端口", G_WEB, 1, 65535, restart=True),
    _p("WEB_API_TOKEN", WEB_API_TOKEN, "str", "API 令牌；留空则首次启动时生成并保存在数据目录 api_token", G_WEB,
       restart=True, secret=True),
    _p("WEB_CORS_ORIGINS", WEB_CORS_ORIGINS, "str_list", "允许跨域访问的来源", G_WEB,
       restart=True),
    _p("SSE_HEARTBEAT_SECONDS", SSE_HEARTBEAT_SECONDS, "float", "实时推送心跳间隔（秒）", G_WEB, 1, 300),
    # ---- several accounts (issue 18): the supervisor and the children it starts
    _p("REPLAY_CLOCK_ORIGIN", REPLAY_CLOCK_ORIGIN, "float", "回放共同起点（Unix 秒）：多个账户按同一时刻起步，同一市场时间看到同样的行情；0 = 不使用",
       G_DATA, 0, 1e11, restart=True),
    _p("ACCOUNT_CONFIG_FILE", ACCOUNT_CONFIG_FILE, "str",
       "实盘账户配置文件（account_config.json）路径；留空为程序目录下的 account_config.json",
       G_SIM, restart=True),
    _p("WEB_REQUIRE_TOKEN_FOR_READS", WEB_REQUIRE_TOKEN_FOR_READS, "bool", "读取类接口也需要 API 令牌（多账户时子进程只允许监管进程访问）", G_WEB,
       restart=True),
    _p("SUPERVISOR_PID", SUPERVISOR_PID, "int", "多账户：监管进程的进程号，由监管进程设置；监管进程退出后本账户安全退出；0 = 独立运行",
       G_WEB, 0, 2**31 - 1, restart=True),
    _p("ACCOUNT_RESTART_LIMIT_PER_HOUR", ACCOUNT_RESTART_LIMIT_PER_HOUR, "int", "多账户：一个账户进程一小时内最多自动重启次数，超过后告警不再重启",
       G_WEB, 1, 100),
    _p("ACCOUNT_RESTART_BACKOFF_MAX", ACCOUNT_RESTART_BACKOFF_MAX, "float", "多账户：账户进程意外退出后重启的最长等待（秒，逐次加倍）", G_WEB, 1,
       3600),
    _p("ACCOUNT_STOP_TIMEOUT", ACCOUNT_STOP_TIMEOUT, "float", "多账户：停止账户进程时等待其安全退出的时间（秒），超时强制结束", G_WEB, 1, 120),
    _p("ACCOUNT_POLL_INTERVAL", ACCOUNT_POLL_INTERVAL, "float", "多账户：监管进程查询各账户状态的间隔（秒）", G_WEB, 0.2, 60),
    # ---- logging
    _p("LOG_LEVEL", LOG_LEVEL, "choice", "日志级别", G_LOG, choices=("DEBUG", "INFO", "WARNING", "ERROR"), restart=True),
    _p("LOG_RETENTION_DAYS", LOG_RETENTION_DAYS, "int", "日志保留天数，过期自动删除", G_LOG, 1, 3650),
    # ---- issue 19: order files from other systems, and the doctor
    _p("ENABLE_ORDER_FILES", ENABLE_ORDER_FILES, "bool", "执行委托文件目录中的 CSV 委托文件", G_ORDER_FILES),
    _p("ORDER_FILE_DIR", ORDER_FILE_DIR, "str", "委托文件目录；留空为 <数据目录>/orders/inbox（处理后移入其下 done/ 或 error/）",
       G_ORDER_FILES, restart=True),
    _p("ORDER_FILE_DRY_RUN", ORDER_FILE_DRY_RUN, "bool", "委托文件只校验、写结果文件，不下单", G_ORDER_FILES),
    _p("ORDER_FILE_STABLE_SECONDS", ORDER_FILE_STABLE_SECONDS, "float", "文件大小保持不变该秒数后才读取（避免读到写了一半的文件）",
       G_ORDER_FILES, 0.0, 600),
    _p("ORDER_FILE_RESCAN_SECONDS", ORDER_FILE_RESCAN_SECONDS, "float", "委托文件目录的周期扫描间隔（秒），作为文件事件的后备", G_ORDER_FILES,
       0.5, 3600),
    _p("ORDER_FILE_QUOTE_WAIT", ORDER_FILE_QUOTE_WAIT, "float", "委托文件中尚未订阅行情的股票，等待其首个行情的最长秒数", G_ORDER_FILES,
       0.0, 120),
    _p("ORDER_FILE_LINE_INTERVAL", ORDER_FILE_LINE_INTERVAL, "float", "委托文件逐行下单的间隔（秒），0 为不间隔", G_ORDER_FILES, 0.0, 60),
    _p("ORDER_FILE_STEP_SECONDS", ORDER_FILE_STEP_SECONDS, "float", "委托文件线程每一步最长处理时间（秒）：到时让出并报告心跳，下一步从下一行继续",
       G_ORDER_FILES, 0.1, 30),
    _p("ORDER_FILE_WAIT_RECHECK_SECONDS", ORDER_FILE_WAIT_RECHECK_SECONDS, "float",
       "委托文件因交易暂停或委托额度用尽而等待时，重新尝试的间隔（秒）", G_ORDER_FILES, 0.5, 600),
    _p("ORDER_FILE_MAX_LINES_PER_MINUTE", ORDER_FILE_MAX_LINES_PER_MINUTE, "int",
       "委托文件每分钟最多下单行数（同时低于熔断 MAX_ACTIONS_PER_MINUTE 与单股每分钟上限，不会触发熔断）", G_ORDER_FILES, 1, 1000),
    _p("DOCTOR_CLOCK_TOLERANCE_SECONDS", DOCTOR_CLOCK_TOLERANCE_SECONDS, "float", "系统诊断：本机时钟与参考时间相差超过该秒数即报警",
       G_DOCTOR, 0.5, 3600),
    _p("DOCTOR_MIN_FREE_MB", DOCTOR_MIN_FREE_MB, "float", "系统诊断：数据目录所在磁盘剩余空间低于该值（MB）即报警", G_DOCTOR, 1, 1e7),
    _p("DOCTOR_LOG_DIR_WARN_MB", DOCTOR_LOG_DIR_WARN_MB, "float", "系统诊断：日志目录超过该大小（MB）即提醒", G_DOCTOR, 1, 1e7),
    _p("DOCTOR_BROKER_TIMEOUT", DOCTOR_BROKER_TIMEOUT, "float", "系统诊断：连接 miniQMT 并查询账户的时限（秒）", G_DOCTOR, 0.5, 60),
    _p("DOCTOR_GATEWAY_SLOW_MS", DOCTOR_GATEWAY_SLOW_MS, "float", "系统诊断：BROKER = remote 时，到网关的往返超过该毫秒数即提醒",
       G_DOCTOR, 1, 60_000),
    # ---- issue 16: notifications, scheduled jobs, the daily report
    _p("NOTIFY_URLS", NOTIFY_URLS, "str_list", "配置文件中的通知渠道（apprise 地址，如 mailto://…、json://…），接收全部事件；"
       "网页中也可添加", G_NOTIFY, restart=True, secret=True),
    _p("NOTIFY_SEND_TIMEOUT", NOTIFY_SEND_TIMEOUT, "float", "单条通知发送超时（秒）", G_NOTIFY, 1, 120),
    _p("NOTIFY_MAX_ATTEMPTS", NOTIFY_MAX_ATTEMPTS, "int", "单条通知最多尝试次数，之后标记为失败", G_NOTIFY, 1, 50),
    _p("NOTIFY_RETRY_BASE_SECONDS", NOTIFY_RETRY_BASE_SECONDS, "float", "发送失败后的首次重试间隔（秒），之后每次加倍", G_NOTIFY, 0.1, 3600),
    _p("NOTIFY_RETRY_MAX_SECONDS", NOTIFY_RETRY_MAX_SECONDS, "float", "重试间隔上限（秒）", G_NOTIFY, 1, 86400),
    _p("NOTIFY_RATE_LIMIT", NOTIFY_RATE_LIMIT, "int", "每个渠道在一个限流窗口内最多发送的消息数（超出的合并为摘要）", G_NOTIFY, 1, 1000),
    _p("NOTIFY_RATE_WINDOW_SECONDS", NOTIFY_RATE_WINDOW_SECONDS, "float", "限流窗口（秒）", G_NOTIFY, 1, 86400),
    _p("NOTIFY_DIGEST_THRESHOLD", NOTIFY_DIGEST_THRESHOLD, "int", "同一渠道积压的待发消息达到该条数时合并为一条摘要", G_NOTIFY, 2, 1000),
    _p("NOTIFY_COALESCE_SECONDS", NOTIFY_COALESCE_SECONDS, "float", "成交等普通消息：连续到达的消息在停顿该秒数后合并为一条发送（告警类不等待）",
       G_NOTIFY, 0, 60),
    _p("NOTIFY_COALESCE_MAX_SECONDS", NOTIFY_COALESCE_MAX_SECONDS, "float", "普通消息最长等待合并的秒数（持续不断的成交也至少每隔该时间发出一次）",
       G_NOTIFY, 0, 600),
    _p("NOTIFY_DIGEST_MAX_CHARS", NOTIFY_DIGEST_MAX_CHARS, "int", "单条汇总消息的最大字符数，超出的按时间顺序分为多条（钉钉单条上限约 2 万字节）",
       G_NOTIFY, 500, 1_000_000),
    _p("NOTIFY_ALARM_RATE_LIMIT", NOTIFY_ALARM_RATE_LIMIT, "int", "告警类消息（线程告警、券商断线、保护失效等）在一个限流窗口内的单独额度，不占普通消息额度",
       G_NOTIFY, 1, 1000),
    _p("NOTIFY_DEDUP_SECONDS", NOTIFY_DEDUP_SECONDS, "float", "相同告警在该时间内只发送一次（秒；成交等事实类消息不去重）", G_NOTIFY, 0,
       86400),
    _p("NOTIFY_CHANNEL_ALARM_FAILURES", NOTIFY_CHANNEL_ALARM_FAILURES, "int", "渠道连续失败该次数后告警一次（界面与其他渠道）", G_NOTIFY, 1,
       100),
    _p("NOTIFY_PUBLIC_URL", NOTIFY_PUBLIC_URL, "str", "通知中附带的网页地址（如 http://192.168.1.10:5000）；留空则不附链接", G_NOTIFY),
    _p("JOB_PRE_OPEN_TIME", JOB_PRE_OPEN_TIME, "str", "盘前任务时间 HH:MM（行情时钟）", G_NOTIFY),
    _p("JOB_POST_CLOSE_TIME", JOB_POST_CLOSE_TIME, "str", "盘后任务时间 HH:MM：账户快照、每日报告", G_NOTIFY),
    _p("JOB_NIGHTLY_TIME", JOB_NIGHTLY_TIME, "str", "夜间维护时间 HH:MM：数据库备份与检查、日志清理", G_NOTIFY),
    _p("BACKUP_RETENTION_DAYS", BACKUP_RETENTION_DAYS, "int", "数据库备份保留天数", G_NOTIFY, 1, 3650),
    # ---- remote gateway (issue 30)
    _p("GATEWAY_BROKER", GATEWAY_BROKER, "choice", "qmt_gateway 包装的券商接口：miniqmt（极简模式）/ bigqmt（大QMT桥接策略）",
       G_GATEWAY, choices=("miniqmt", "bigqmt"), restart=True),
    _p("GATEWAY_HOST", GATEWAY_HOST, "str", "qmt_gateway 监听的地址；默认只允许本机，局域网访问填 0.0.0.0 或本机网卡地址", G_GATEWAY,
       restart=True),
    _p("GATEWAY_PORT", GATEWAY_PORT, "int", "qmt_gateway 监听的端口", G_GATEWAY, 1, 65535, restart=True),
    _p("GATEWAY_TOKEN", GATEWAY_TOKEN, "str", "qmt_gateway 的访问令牌（至少 16 个字符）；留空则自动生成并保存在网关数据目录的 "
       "gateway_token 文件中", G_GATEWAY, restart=True, secret=True),
    _p("GATEWAY_ALLOWED_CLIENTS", GATEWAY_ALLOWED_CLIENTS, "str_list", "允许访问 qmt_gateway 的客户端地址或网段，如 192.168.1.10、"
       "192.168.1.0/24", G_GATEWAY, restart=True),
    _p("GATEWAY_READ_ONLY", GATEWAY_READ_ONLY, "bool", "网关只读模式：只提供查询、行情和事件，拒绝委托与撤单", G_GATEWAY, restart=True),
    _p("GATEWAY_TIME_WINDOW", GATEWAY_TIME_WINDOW, "float", "请求时间戳与网关时钟允许相差的秒数（超出即拒绝，防重放）", G_GATEWAY,
       1, 600, restart=True),
    _p("GATEWAY_EVENT_WAIT", GATEWAY_EVENT_WAIT, "float", "事件长轮询在网关上最多挂起的秒数", G_GATEWAY, 0.5, 120, restart=True),
    _p("GATEWAY_EVENT_BATCH", GATEWAY_EVENT_BATCH, "int", "一次应答最多携带的事件条数", G_GATEWAY, 1, 10000, restart=True),
    _p("GATEWAY_THREADS", GATEWAY_THREADS, "int", "qmt_gateway 处理请求的线程数", G_GATEWAY, 2, 64, restart=True),
    _p("GATEWAY_LINK_CHECK_INTERVAL", GATEWAY_LINK_CHECK_INTERVAL, "float", "网关检查券商连接状态变化的间隔（秒）", G_GATEWAY,
       0.01, 60, restart=True),
    _p("GATEWAY_REQUEST_TIMEOUT", GATEWAY_REQUEST_TIMEOUT, "float", "守护进程：一次网关请求的最长等待（秒）；委托超时即为结果未知"
       "（按备注核对，重试不会重复下单）", G_GATEWAY, 0.5, 120, restart=True),
    _p("GATEWAY_PROBE_INTERVAL", GATEWAY_PROBE_INTERVAL, "float", "守护进程：无事件时每隔该秒数探测一次网关是否存活（事件长轮询的"
       "挂起时长）", G_GATEWAY, 0.2, 60, restart=True),
    _p("GATEWAY_RECONNECT_FIRST_DELAY", GATEWAY_RECONNECT_FIRST_DELAY, "float", "守护进程：与网关断开后第一次重连前的等待（秒），"
       "之后每次翻倍", G_GATEWAY, 0.05, 60, restart=True),
    _p("GATEWAY_RECONNECT_MAX_DELAY", GATEWAY_RECONNECT_MAX_DELAY, "float", "守护进程：重连网关等待的上限（秒）", G_GATEWAY,
       0.1, 600, restart=True),
    _p("GATEWAY_READER", GATEWAY_READER, "str", "守护进程：在网关上的事件读者名（字母数字）；同一网关的每个读者（交易守护进程、"
       "只读看板）须用不同的名字，各自接收全部事件", G_GATEWAY, restart=True),
    # ---- issue 21: broker deadline, circuit breakers (defaults far below the exchanges' thresholds for
    # programmatic trading: 300 orders + cancels per second or 20,000 per day for one account), storage, web limits
    _p("BROKER_CALL_TIMEOUT", BROKER_CALL_TIMEOUT, "float", "券商接口单次调用的最长等待（秒）；超时的委托记为状态未知并与券商"
       "核对，不会自动重发", G_TIMING, 1, 300),
    _p("QMT_QUERY_TIMEOUT", QMT_QUERY_TIMEOUT, "float", "实盘：向 miniQMT 查询资产、持仓、委托的最长等待（秒）", G_TIMING,
       0.5, 300, restart=True),
    _p("QMT_CONNECT_TIMEOUT", QMT_CONNECT_TIMEOUT, "float", "实盘：连接 miniQMT 的最长等待（秒）", G_TIMING, 1, 600,
       restart=True),
    _p("QMT_RECONNECT_FIRST_DELAY", QMT_RECONNECT_FIRST_DELAY, "float", "实盘：与 miniQMT 断开后第一次重连前的等待（秒），"
       "之后每次翻倍", G_TIMING, 0.1, 60, restart=True),
    _p("QMT_RECONNECT_MAX_DELAY", QMT_RECONNECT_MAX_DELAY, "float", "实盘：重连等待的上限（秒）", G_TIMING, 1, 3600,
       restart=True),
    _p("QMT_RECONNECT_SESSION_MAX_DELAY", QMT_RECONNECT_SESSION_MAX_DELAY, "float",
       "实盘：交易时段内重连等待的上限（秒），miniQMT 恢复响应后数秒内即重连", G_TIMING, 0.1, 60),
    _p("MAX_ORDERS_PER_STOCK_PER_DAY", MAX_ORDERS_PER_STOCK_PER_DAY, "int", "熔断：单只股票每个来源每日最多自动委托笔数，达到后该股"
       "的该来源停止自动交易", G_RISK, 1, 1000),
    _p("MAX_CANCELS_PER_DAY", MAX_CANCELS_PER_DAY, "int", "熔断：账户每个来源每日最多撤单笔数，达到后全账户的该来源停止自动交易", G_RISK, 1, 9000),
    _p("MAX_ORDER_VOLUME", MAX_ORDER_VOLUME, "int", "熔断：单笔委托最多股数，自动委托超过则拒绝并停止该股该来源的自动交易", G_RISK, 100,
       10_000_000),
    _p("MAX_ACTIONS_PER_MINUTE", MAX_ACTIONS_PER_MINUTE, "int", "熔断：账户每个来源每分钟最多委托+撤单笔数，达到后全账户的该来源停止自动交易（交易所"
       "程序化交易高频标准为每秒 300 笔或每日 2 万笔，本默认值远低于此）", G_RISK, 1, 1000),
    _p("MAX_ACTIONS_PER_STOCK_PER_MINUTE", MAX_ACTIONS_PER_STOCK_PER_MINUTE, "int", "熔断：单只股票每个来源每分钟最多委托+撤单笔数，"
       "达到后该股的该来源停止自动交易", G_RISK, 1, 1000),
    _p("STORAGE_MIN_FREE_MB", STORAGE_MIN_FREE_MB, "float", "数据目录所在磁盘剩余空间下限（MB），低于则停止自动交易（磁盘已满）",
       G_TIMING, 0, 1_000_000),
    _p("STORAGE_CHECK_INTERVAL", STORAGE_CHECK_INTERVAL, "float", "检查磁盘剩余空间的间隔（秒）；磁盘满导致的停止交易在空间恢复后的"
       "下一次检查时解除", G_TIMING, 1, 3600),
    _p("WEB_CONNECTION_LIMIT", WEB_CONNECTION_LIMIT, "int", "Web 服务最多同时打开的连接数（空闲连接不占处理线程；超过时关闭"
       "最久无进展的空闲连接，远程的优先，本机操作总能接入）", G_WEB, 50,
       10000, restart=True),
    _p("WEB_IDLE_TIMEOUT", WEB_IDLE_TIMEOUT, "float", "空闲连接超过该时间（秒）即关闭", G_WEB, 5, 600, restart=True),
    _p("WEB_REQUEST_READ_TIMEOUT", WEB_REQUEST_READ_TIMEOUT, "float", "连接须在该秒数内送完一个完整请求，否则关闭（防止慢速连接"
       "占满服务）", G_WEB, 1, 600, restart=True),
    _p("WEB_SSE_PER_CLIENT", WEB_SSE_PER_CLIENT, "int", "同一客户端地址最多同时打开的实时推送连接数", G_WEB, 1, 16),
    # ---- issue 29: the big-QMT bridge (bigqmt/)
    _p("BIGQMT_HOST", BIGQMT_HOST, "str", "BROKER = bigqmt 时：大QMT 中桥接策略监听的地址（只用本机回环地址）", G_BIGQMT, restart=True),
    _p("BIGQMT_PORT", BIGQMT_PORT, "int", "BROKER = bigqmt 时：桥接策略监听的端口，须与策略文件中的 PORT 一致", G_BIGQMT, 1, 65535,
       restart=True),
    _p("BIGQMT_TRANSPORT", BIGQMT_TRANSPORT, "choice", "与桥接策略的通信方式：tcp（本机 TCP，默认）/ folder（文件夹，大QMT 不能加载"
       " socket 模块时用），须与策略文件中的 TRANSPORT 一致", G_BIGQMT, choices=("tcp", "folder"), restart=True),
    _p("BIGQMT_FOLDER", BIGQMT_FOLDER, "str", "BIGQMT_TRANSPORT = folder 时的文件夹，须与策略文件中的 FOLDER 一致", G_BIGQMT,
       restart=True),
    _p("BIGQMT_CONNECT_TIMEOUT", BIGQMT_CONNECT_TIMEOUT, "float", "连接大QMT 桥接策略并核对版本的最长等待（秒）", G_BIGQMT, 0.5, 120,
       restart=True),
    _p("BIGQMT_CANCEL_VERIFY_SECONDS", BIGQMT_CANCEL_VERIFY_SECONDS, "float", "撤单后桥接策略观察委托状态的时长（秒），届时仍未变为"
       "已撤即报告撤单未生效", G_BIGQMT, 1, 120),
    # ---- issue 28 §3: idle cash chores (chores/)
    _p("ENABLE_IPO_SUBSCRIBE", ENABLE_IPO_SUBSCRIBE, "bool", "每个交易日按券商给的额度申购当日全部（或筛选后的）新股、新债，"
       "并检查中签（只在实盘账户运行）", G_CHORES),
    _p("IPO_SUBSCRIBE_TIME", IPO_SUBSCRIBE_TIME, "str", "申购任务时间 HH:MM（行情时钟，须在交易时段内）；同一任务检查此前申购的中签",
       G_CHORES),
    _p("IPO_SUBSCRIBE_KINDS", IPO_SUBSCRIBE_KINDS, "str_list", "申购哪些品种：stock 新股、bond 新债（可转债、可交换债）", G_CHORES),
    _p("IPO_SUBSCRIBE_EXCLUDE", IPO_SUBSCRIBE_EXCLUDE, "str_list", "不申购的申购代码或名称（如 732123.SH、某某转债），完全相同才排除",
       G_CHORES),
    _p("IPO_ALLOTMENT_DAYS", IPO_ALLOTMENT_DAYS, "int", "申购后在多少个交易日内检查中签（结果在 T+2 公布，多留几天余量）", G_CHORES,
       2, 30),
    _p("ENABLE_REPO", ENABLE_REPO, "bool", "在 REPO_TIME 把多余的可用资金做隔夜国债逆回购（只在实盘账户运行）", G_CHORES),
    _p("REPO_TIME", REPO_TIME, "str", "逆回购任务时间 HH:MM（行情时钟；逆回购交易到 15:30）", G_CHORES),
    _p("REPO_KEEP_CASH", REPO_KEEP_CASH, "float", "逆回购后至少留下的可用资金（元）；另扣除未成交买单、次日计划买入与中签待缴款",
       G_CHORES, 0, 1e10),
    _p("REPO_CODES", REPO_CODES, "str_list", "可用的逆回购代码（1 天期：沪市 204001.SH、深市 131810.SZ），利率相同取靠前的", G_CHORES),
)

MIN_API_TOKEN_LENGTH = 16

PARAMS_BY_KEY: dict[str, Param] = {p.key: p for p in PARAMS}
DEFAULTS: dict[str, Any] = {p.key: p.default for p in PARAMS}


class ConfigError(Exception):
    """A refused value or change; `errors` maps each key to its Chinese reason."""

    def __init__(self, errors: Mapping[str, str]):
        super().__init__("；".join(errors.values()))
        self.errors = dict(errors)


@dataclass
class ValidationResult:
    errors: dict[str, str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors


MAX_WHOLE_NUMBER = 2 ** 53  # beyond this an integer parameter is certainly a mistake (and loses float precision)


def coerce_value(param: Param, value: Any) -> Any:
    """Type-check and normalise one value; raise ValueError with a Chinese message. Never guesses:
    '5' is not accepted for a number, since the API and the page send JSON types."""
    kind = param.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{param.key} 必须是布尔值 true/false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ValueError(f"{param.key} 必须是整数")
        if abs(value) > MAX_WHOLE_NUMBER:  # ±10**400 would overflow every float comparison and message
            raise ValueError(f"{param.key} 数值过大")
        return _in_range(param, int(value))
    if kind == "float":
        return _in_range(param, _number(param, value))
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{param.key} 必须是文本")
        text = value.strip()
        if param.key == "WEB_API_TOKEN" and 0 < len(text) < MIN_API_TOKEN_LENGTH:  # it would block the next start
            raise ValueError(f"API 令牌太短：至少需要 {MIN_API_TOKEN_LENGTH} 个字符（留空则自动生成）")
        return text
    if kind == "choice":
        if value not in param.choices:
            raise ValueError(f"{param.key} 只能取 {param.describe_range()}")
        return value
    if kind == "float_list":
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"{param.key} 必须是非空数字列表")
        return [_in_range(param, _number(param, v)) for v in value]
    if kind == "rate_table":
        return _rate_table(param, value)
    if kind == "str_list":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{param.key} 必须是文本列表")
        return [v.strip() for v in value]
    raise ValueError(f"{param.key} 的类型 {kind} 未定义")


def coerce_all(values: Mapping[str, Any]) -> dict[str, Any]:
    """Type- and range-check a set of values; ConfigError naming every bad key (unknown keys included)."""
    coerced, errors = {}, {}
    for key, value in values.items():
        param = PARAMS_BY_KEY.get(key)
        if param is None:
            errors[key] = f"未知参数 {key}"
            continue
        try:
            coerced[key] = coerce_value(param, value)
        except ValueError as exc:
            errors[key] = str(exc)
    if errors:
        raise ConfigError(errors)
    return coerced


def validate(values: Mapping[str, Any]) -> ValidationResult:
    """Check a complete set of values: each one's type and range, then rules across keys."""
    try:
        coerce_all(values)
    except ConfigError as exc:
        return ValidationResult(exc.errors, [])
    errors = _cross_errors(values)
    return ValidationResult(errors, [] if errors else _warnings(values))


def _cross_errors(v: Mapping[str, Any]) -> dict[str, str]:
    errors = {}
    table = v["DYNAMIC_TAKE_PROFIT"]
    thresholds = [t for t, _ in table]
    if thresholds != sorted(thresholds) or len(set(thresholds)) != len(thresholds):
        errors["DYNAMIC_TAKE_PROFIT"] = "DYNAMIC_TAKE_PROFIT 的浮盈阈值必须严格升序"
    elif any(not 0 < c < 1 for _, c in table):
        errors["DYNAMIC_TAKE_PROFIT"] = "DYNAMIC_TAKE_PROFIT 的止盈位系数必须在 0 和 1 之间"
    elif any(t >= 0 and (1 + t) * c <= 1 + v["STOP_LOSS_RATIO"] for t, c in table):
        errors["DYNAMIC_TAKE_PROFIT"] = "DYNAMIC_TAKE_PROFIT 的某档止盈位低于止损价，不合理"
    levels = v["BUY_GRID_LEVELS"]
    if levels != sorted(levels, reverse=True) or len(set(levels)) != len(levels):
        errors["BUY_GRID_LEVELS"] = "BUY_GRID_LEVELS 必须严格降序（如 1.0, 0.93, 0.88）"
    if v["STOP_LOSS_RATIO"] >= 0:
        errors["STOP_LOSS_RATIO"] = "止损比例必须小于 0"
    if v["GRID_STOP_LOSS_RATIO"] >= 0:
        errors["GRID_STOP_LOSS_RATIO"] = "网格止损率必须小于 0"
    if not _is_iso_date(str(v.get("ST_LIMIT_CHANGE_DATE", ""))):
        errors["ST_LIMIT_CHANGE_DATE"] = "ST_LIMIT_CHANGE_DATE 必须是 YYYY-MM-DD 格式的日期，如 2026-07-06"
    for key in ("JOB_PRE_OPEN_TIME", "JOB_POST_CLOSE_TIME", "JOB_NIGHTLY_TIME", "IPO_SUBSCRIBE_TIME", "REPO_TIME"):
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", str(v.get(key, "00:00"))):
            errors[key] = f"{key} 必须是 HH:MM 格式的时间，如 09:00"
    return errors


def _is_iso_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", text))


def _warnings(v: Mapping[str, Any]) -> list[str]:
    """Settings that are allowed but cannot all work: add levels the stop-loss pre-empts, budgets too small."""
    warnings = []
    unit, cap, stop = v["POSITION_UNIT"], v["MAX_POSITION_VALUE"], v["STOP_LOSS_RATIO"]
    shares, cost_total = unit / 1.0, unit  # episode bought at base price 1.0 (fees ignored)
    for index, level in enumerate(v["BUY_GRID_LEVELS"]):
        if index == 0 and level == 1.0:
            continue
        average_cost = cost_total / shares
        if level <= average_cost * (1 + stop):
            warnings.append(f"补仓档位 {level} 低于或等于止损价（成本×{1 + stop:.3f}），止损会先触发，该档位不可达")
            break
        budget = min(unit, cap - cost_total)
        if budget <= 0:
            warnings.append(f"补仓档位 {level} 不会买入：单股最大持仓 {cap:.0f} 元已用完")
            break
        shares += budget / level
        cost_total += budget
    if cap < unit:
        warnings.append("MAX_POSITION_VALUE 小于 POSITION_UNIT，补仓永远不会发生")
    if v["DYNAMIC_TAKE_PROFIT"][0][0] > v["INITIAL_TAKE_PROFIT_RATIO"] + 1e-12:
        warnings.append("动态止盈最低阈值高于首次止盈比例，首次止盈后动态止盈可能长时间不生效")
    if v["GRID_BUY_AMOUNT"] > v["GRID_MAX_INVESTMENT"]:
        warnings.append("GRID_BUY_AMOUNT 大于 GRID_MAX_INVESTMENT，网格无法买入")
    return warnings


def _number(param: Param, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{param.key} 必须是数字")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        raise ValueError(f"{param.key} 数值过大") from None
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"{param.key} 必须是数字")
    return number


def _in_range(param: Param, value: float) -> Any:
    if param.min is not None and value < param.min:
        raise ValueError(f"{param.key} 超出范围：{_fmt(value)} 小于最小值 {_fmt(param.min)}")
    if param.max is not None and value > param.max:
        raise ValueError(f"{param.key} 超出范围：{_fmt(value)} 大于最大值 {_fmt(param.max)}")
    return value


def _rate_table(param: Param, value: Any) -> list[tuple[float, float]]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{param.key} 必须是非空的 (阈值, 系数) 列表")
    rows = []
    for row in value:
        if not isinstance(row, (list, tuple)) or len(row) != 2:
            raise ValueError(f"{param.key} 的每一行必须是 (阈值, 系数)")
        rows.append((_in_range(param, _number(param, row[0])), _number(param, row[1])))
    return rows


def _fmt(number: Optional[float]) -> str:
    """A number as a person reads it: 2147483647 → 「2,147,483,647」, 1e-05 → 「0.00001」 (never exponent form)."""
    if number is None:
        return "不限"
    if isinstance(number, int):  # exact, whatever its size (float() of 10**400 overflows)
        return f"{number:,}"
    if float(number).is_integer():
        return f"{int(number):,}"
    return f"{number:.12f}".rstrip("0").rstrip(".")
