import type * as FakerModule from '@faker-js/faker' with { 'resolution-mode': 'import' };
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

/**
 * Given names and family names of many naming cultures, for telling a person's name from other
 * capitalised words. Most come from @faker-js/faker's locale data (MIT; 70 locales, Latin and native
 * scripts). Faker writes Arabic, Hebrew, Persian, Chinese, Japanese, Korean, Russian, Greek and Thai
 * names in their own scripts only, so the romanised forms texts use for them are listed here, with
 * more from West and East Africa and South Asia.
 */
export interface Gazetteer {
  /** Lower-case given names. */
  given: ReadonlySet<string>;
  /** Lower-case family names (without particles such as "van", "de", "al"). */
  family: ReadonlySet<string>;
  /** Lower-case names of cities, states and countries: "Reggio Emilia" is a place, not a person. */
  places: ReadonlySet<string>;
}

const ROMANISED_GIVEN = `
ahmed ahmad mohammed mohammad muhammad mohamed mahmoud mustafa mostafa omar umar ali hassan hasan hussein husain
ibrahim ismail yusuf youssef yousef khalid khaled karim kareem tariq tarek samir sameer nabil walid waleed faisal
fahad hamza bilal zaid zayd amir ameer rashid rasheed said saeed salim saleem nasser nasir jamal adel adil hani
fadi rami ziad majid imad anas osama usama bassam marwan hisham ayman tamer sami fatima fatma aisha aysha ayesha
khadija maryam mariam zainab zeinab layla leila laila noor nour nur amira amina huda hoda rania reem rim salma
samira yasmin yasmina yasmine dina hana hanan lina mona nadia noura sara sarah rana dalia farah ghada iman eman
jana lubna maha mai manal nada najla rasha rawan ruba sahar suha wafa zahra zeina hala hiba asma abdullah
abdallah abdul abdulrahman abdelaziz abdelkader
yossi yosef avraham avi moshe david yitzhak itzik yaakov shlomo eli elad eyal gal guy itai itay noam omer oren
ori ron roni tomer uri yair yoav yonatan ariel amit boaz dror erez gilad nadav nir ofer shai shay tal tamar noa
shira yael maya michal moran hila inbal keren liat limor meital merav neta orly osnat rivka ronit sarit shani
shiri talia tzipi yaara yarden dana adi einav
wei fang min jing lei jun hui ying li na yan hong ping xia ming hua qiang jie tao yong chen bo chao gang hao jian
kai lin long peng rui tian wen xin xiu yu yun zhen zhi xiaoming xiaohong xiaoling xiaoyan xiaowei jianguo jianhua
zhiwei zhihua guoqiang haitao weiwei lili jingjing yanyan tingting qing mei lan juan feng bin
siobhan aoife niamh saoirse caoimhe sinead sinéad orla roisin róisín grainne aisling eimear ciara clodagh deirdre oisin oisín cian darragh eoin ciaran ciarán padraig pádraig seamus séamus sean seán colm cathal donal dónal fionn tadhg ruairi aiko akane asuka ayumi chiaki emiko eri fumiko hanako hiromi kana kazue kyoko mayumi michiko miho naoko noriko reiko sachiko sayuri setsuko shizuka takako yoshie yuka yukiko yumiko hiroko junko kumiko masako nobuko daisuke hideki hiroyuki kazuo kenichi masahiro minoru nobuo ryo shigeru shuji takeshi tomohiro toshio tsuyoshi yasuo yoshio yuji haruto yuto sota yuki hiroshi takashi kenji akira satoshi kazuki daiki ryota shota takumi naoki yusuke kenta
hiroki taro ichiro jiro koji makoto masato noboru osamu shinji tetsuya yoshiro yui hina yuna aoi sakura rin mio
haruka akiko yoko keiko yumi naomi emi mai ayaka misaki nanami riko sayaka tomoko yoshiko kaori megumi chihiro
min-jun seo-jun do-yun ji-ho ha-jun ji-hoon jun-seo hyun-woo sung-min dong-hyun young-ho jae-won seung-hyun
tae-yang ji-woo seo-yeon ha-eun ji-yoo soo-ah ji-min min-seo ye-jin hye-jin eun-ji su-bin yu-na ji-yeon hyun-jin
min jae hyun sung young jin hoon woo yeon eun ji ha seo
reza ali-reza alireza mehdi hossein hosein amir-hossein arash babak behnam dariush farhad farid hamid kamran
kaveh kourosh majid mehran mohsen navid omid payam peyman ramin saeed shahram siamak vahid parisa shirin
mina nasrin neda roya sepideh shabnam soraya taraneh yasaman ladan leyla mahsa maryam nazanin
arjun aarav vivaan aditya vihaan sai krishna ishaan rohan rahul amit ankit anil sanjay sunil vijay rajesh ramesh
suresh mahesh ganesh dinesh manoj deepak pradeep sandeep rakesh mukesh naveen praveen ravi kiran vikram vikas
priya ananya diya aadhya pooja neha sneha divya kavya anjali deepika shreya swati meera lakshmi sunita anita
geeta rekha lata usha nisha ritu kajal aishwarya sanjana shruti tanvi
kwame kofi kojo kwaku yaw kwabena kwasi akosua ama abena adwoa afia akua yaa efua esi nana kweku ekow fiifi
chinedu chidi chukwuemeka emeka obinna nnamdi ikenna uchenna ifeanyi chioma ngozi adaeze nneka amaka ifeoma
oluwaseun seun olumide oluwafemi femi tunde babatunde ayodele ayo kunle segun wale bola funmilayo funmi
folake yetunde titilayo abimbola adaora musa abubakar aminu usman bello sani ibrahim haruna garba hauwa
zainab aisha halima binta fatou aminata mariama awa khady moussa mamadou ousmane abdoulaye cheikh modou
babacar ibrahima lamine seydou souleymane
abebe alemu bekele girma haile kebede tesfaye tadesse dawit yonas meseret tigist selam hiwot marta almaz
baraka juma jabari kamau kariuki mwangi njoroge otieno ochieng odhiambo wanjiru wambui akinyi achieng nyambura
zawadi neema imani rehema amani
ivan dmitri dmitry sergei sergey alexei alexey andrei andrey mikhail nikolai vladimir yuri oleg igor pavel
anatoly boris viktor konstantin maxim artem kirill roman evgeny yevgeny olga natalia natalya tatiana tatyana
svetlana irina ekaterina yekaterina anastasia yulia elena ludmila galina oksana marina anna daria darya
sofia polina ksenia vera nadezhda
giorgos georgios yiannis ioannis dimitris nikos konstantinos kostas panagiotis christos vasilis eleni
maria katerina sofia georgia ioanna dimitra vasiliki angeliki
van văn thi thị duc đức huu hữu somchai somsak prasert anan arthit niran sompong suda malee siriporn kanya nong ploy
`;

const ROMANISED_FAMILY = `
haddad khalil khoury nasser mansour hamdan hussein saleh salem aziz rahman rahim karimi hashemi hakimi masri
al-masri al-rashid rashid al-ahmad al-hassan al-sayed el-sayed sayed farouk othman osman qureshi siddiqui
sheikh shaikh abdullah abdulla darwish habib hamid jaber jabir kassem qasim nassar obeid sabbagh shaheen
suleiman yassin zaki zayed bakr ghanem hijazi hindi issa mahmoud mustafa najjar rizk saad sharif tahan
cohen levi levy mizrahi peretz biton friedman katz azoulay dahan avraham david ben-david amsalem malka
ohana shapiro goldberg rosenberg weiss klein ashkenazi segal gabay hadad vaknin sasson
wang li zhang liu chen yang huang zhao wu zhou xu sun ma zhu hu guo he gao lin luo zheng liang xie song tang
han feng deng cao peng zeng xiao tian dong pan yuan cai jiang yu du ye cheng wei su lu ding ren shen yao
lu jiang cui zhong tan lu fan wang liao shi jin wei jia xia fu fang zou xiong bai meng qin qiu hou jiang
sato suzuki takahashi tanaka watanabe ito yamamoto nakamura kobayashi kato yoshida yamada sasaki yamaguchi
matsumoto inoue kimura hayashi shimizu yamazaki mori abe ikeda hashimoto yamashita ishikawa nakajima maeda
fujita ogawa goto okada hasegawa murakami kondo ishii saito sakamoto endo aoki fujii nishimura fukuda ota
miura okamoto matsuda nakagawa
kim lee park choi jung jeong kang cho yoon yun jang lim han oh seo shin kwon hwang ahn song jeon hong yoo ko
moon yang son bae baek heo nam sim noh ha kwak sung cha joo woo gu min ryu na jin
mohammadi hosseini ahmadi rezaei moradi jafari karimi rahimi hashemi mousavi sadeghi tehrani ghorbani
kazemi rostami safavi shirazi esfahani najafi ebrahimi amini asadi bagheri heidari
sharma verma gupta singh kumar patel shah mehta joshi reddy rao nair iyer menon pillai das bose banerjee
chatterjee mukherjee ghosh sen dutta chopra kapoor khanna malhotra agarwal jain bhatt desai kulkarni
deshpande patil pandey mishra tiwari yadav chauhan thakur saxena srivastava naidu krishnan subramanian
mensah osei boateng owusu asante appiah agyei amoah darko antwi addo ofori gyamfi adjei opoku kusi
okafor okonkwo okeke eze nwosu obi chukwu adeyemi adebayo adewale oladipo olawale ogunleye bello abubakar
ibrahim musa yusuf danjuma diallo ndiaye diop fall sow ba sy traore keita coulibaly toure camara kone
cisse sarr gueye faye mbaye kamara sesay conteh bangura
bekele tesfaye haile girma kebede alemu tadesse wolde gebre mengistu desta ayele
mwangi kamau otieno ochieng odhiambo wanjiru kariuki njoroge kipchoge kiprop kimani omondi onyango mutua
ivanov smirnov kuznetsov popov vasiliev petrov sokolov mikhailov novikov fedorov morozov volkov alekseev
lebedev semenov egorov pavlov kozlov stepanov nikolaev orlov andreev makarov nikitin zakharov zaitsev
ivanova smirnova kuznetsova popova petrova sokolova novikova morozova volkova
papadopoulos papadakis georgiou nikolaou dimitriou ioannou konstantinou christodoulou vasileiou
pappas alexiou karagiannis oikonomou
saetang srisuk chaiyaporn wongsawat sukhumvit rattanakorn
nguyen nguyễn tran trần le lê pham phạm hoang hoàng phan vu vũ vo võ dang đặng bui bùi do đỗ ho hồ ngo ngô
duong dương ly lý
`;

/** Multi-word places whose words are also names, beyond faker's city lists. */
const PLACES = `
Reggio Emilia
Charlotte Amalie
Santa Cruz de Tenerife
Marie-Galante
Ho Chi Minh
Ho Chi Minh City
Alice Springs
Victoria Falls
Mount Pleasant
San Jose
San José
Santa Clara
Santa Barbara
Santa Monica
Santa Fe
Saint Louis
St Louis
Port Elizabeth
Port Louis
Fort Worth
Fort Lauderdale
Elizabeth City
Charlotte Town
Charlottetown
Marie Byrd Land
Prince Edward Island
Cape Town
Georgetown
Jefferson City
Carson City
Frankfurt am Main
Mülheim an der Ruhr
Den Bosch
Villa María
São José dos Campos
São Paulo
São Luís
Rio de Janeiro
Belo Horizonte
Puerto Madero
Sesto San Giovanni
Francisco Morazán
`;

/** Words that may stand between the parts of one name. */
export const NAME_PARTICLES = new Set(
  (
    'van von der den de da das do dos di du del della delle dei des le la lo los las al el bin ibn ben bint ter ten zu ' +
    'y e i af av abu ould ag ap bat'
  ).split(' '),
);

let cache: Gazetteer | undefined;

/** Splits list entries ("Ana Laura", "van der Berg", "Schamberger-Leffler") into name tokens. */
function addTokens(into: Set<string>, entry: string): void {
  for (const raw of entry.toLowerCase().split(/[\s,]+/)) {
    const w = raw.replace(/^['’-]+|['’.-]+$/g, '');
    if (w.length < 2 || NAME_PARTICLES.has(w)) continue;
    into.add(w);
    if (w.includes('-')) for (const part of w.split('-')) if (part.length >= 2) into.add(part);
  }
}

function flatten(x: unknown): string[] {
  if (!x) return [];
  if (Array.isArray(x)) return x.filter((v): v is string => typeof v === 'string');
  if (typeof x === 'object') return Object.values(x as Record<string, unknown>).flatMap(flatten);
  return [];
}

/** Builds the gazetteer: loading faker's 70 locales takes 0.3-0.8 s of CPU and about 20 MB. */
function build(): Gazetteer {
  // @faker-js/faker is an ES module; Node >= 20.19 loads it with require().
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { allLocales } = require('@faker-js/faker') as typeof FakerModule;
  const given = new Set<string>();
  const family = new Set<string>();
  const places = new Set<string>();
  for (const locale of Object.values(allLocales as unknown as Record<string, FakerModule.LocaleDefinition>)) {
    const location = locale.location as Record<string, unknown> | undefined;
    for (const key of ['city_name', 'state', 'country', 'county']) {
      for (const n of flatten(location?.[key])) if (/\s|-/.test(n)) places.add(n.toLowerCase());
    }
    const person = locale.person as Record<string, unknown> | undefined;
    if (!person) continue;
    for (const n of flatten(person.first_name)) addTokens(given, n);
    for (const n of flatten(person.middle_name)) addTokens(given, n);
    for (const n of flatten(person.last_name)) addTokens(family, n);
  }
  for (const n of ROMANISED_GIVEN.split(/\s+/)) if (n) addTokens(given, n);
  for (const n of ROMANISED_FAMILY.split(/\s+/)) if (n) addTokens(family, n);
  for (const p of PLACES.split('\n')) if (p.trim()) places.add(p.trim().toLowerCase());
  return { given, family, places };
}

/** The gazetteer as plain arrays: what the worker thread hands over. */
export interface NameLists {
  given: string[];
  family: string[];
  places: string[];
}

export function nameLists(): NameLists {
  const g = build();
  return { given: [...g.given], family: [...g.family], places: [...g.places] };
}

/**
 * The gazetteer, built on first use in the calling thread. Node-RED's nodes load it beforehand with
 * loadGazetteer(), which keeps the build off the event loop.
 */
export function gazetteer(): Gazetteer {
  cache ??= build();
  return cache;
}

let loading: Promise<Gazetteer> | undefined;

/**
 * The gazetteer built in a worker thread, so that loading faker's locales does not stall the event
 * loop every flow shares; its lists are put into sets here a slice at a time. Shared by all callers.
 */
export function loadGazetteer(): Promise<Gazetteer> {
  if (cache) return Promise.resolve(cache);
  loading ??= (async () => {
    // One string per list, lines apart: a string crosses between threads as one copy, where
    // tens of thousands of small strings would be rebuilt one by one on this event loop.
    const lists = await new Promise<Record<keyof NameLists, string>>((resolve, reject) => {
      const worker = new Worker(path.join(__dirname, 'gazetteer-worker.js'));
      worker.once('message', (joined: Record<keyof NameLists, string>) => {
        resolve(joined);
        void worker.terminate();
      });
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the name-list worker ended with code ${code}`)));
    });
    const loaded: Gazetteer = {
      given: await inSlices(lists.given),
      family: await inSlices(lists.family),
      places: await inSlices(lists.places),
    };
    cache ??= loaded;
    return cache;
  })();
  // A failed load is tried again by the next caller.
  loading.catch(() => (loading = undefined));
  return loading;
}

/** Lines of a joined list put into a set, a few milliseconds at a time. */
async function inSlices(joined: string): Promise<Set<string>> {
  const set = new Set<string>();
  let sliceStart = performance.now();
  for (let at = 0; at < joined.length;) {
    let nl = joined.indexOf('\n', at);
    if (nl < 0) nl = joined.length;
    if (nl > at) set.add(joined.slice(at, nl));
    at = nl + 1;
    if (performance.now() - sliceStart >= 5) {
      await new Promise((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
  return set;
}
