@problemName NotANumber
@dimensions 2
@classLabel true x y
@data
1,2:3,4:x
1,2:3,4:y
1,2:3,4:x
1,2:3,abc:y
